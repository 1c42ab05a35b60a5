from politune.cli import main

main()
