import sys

if len(sys.argv) > 1 and sys.argv[1] in ("bursts", "mixed", "noop"):
    from .scenarios import main as scenario

    scenario(sys.argv[1:])
else:
    from .run import main

    main()
