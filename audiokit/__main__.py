from audiokit.cli.main import main

main()
