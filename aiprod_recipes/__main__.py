from aiprod_recipes.cli import main

raise SystemExit(main())
