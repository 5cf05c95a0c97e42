from nodes.cli import main

main()
