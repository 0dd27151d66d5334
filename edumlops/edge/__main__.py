from edumlops.edge.cli import main

raise SystemExit(main())
