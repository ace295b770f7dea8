from relevo.cli import main

main()
