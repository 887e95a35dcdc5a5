from stagecraft.cli.main import main

main()
