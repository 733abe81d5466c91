from harken.cli import main

main()
