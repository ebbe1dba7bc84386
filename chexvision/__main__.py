from chexvision.cli.main import main

main()
