"""`python -m l2lgd` runs the `l2l` command line."""

from l2lgd.launch import main

main()
