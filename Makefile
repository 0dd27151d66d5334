# The two commands: `make run` and `make test`. Everything else is a helper.
.PHONY: run test bench lint clean

run:  ## set up, migrate, seed the demo and run web + worker + beat (Ctrl-C stops all three)
	@bash scripts/run.sh

test:  ## install test dependencies, make sure PostgreSQL/Redis/chromium are there, run ruff + pytest
	@bash scripts/test.sh

bench:  ## run every benchmark under bench/ and print the table
	@bash scripts/bootstrap.sh test,bench
	@.venv/bin/python bench/run_all.py

lint:
	@bash scripts/bootstrap.sh test
	@.venv/bin/ruff check .
	@.venv/bin/lint-imports --no-cache

clean:
	rm -rf var .venv
