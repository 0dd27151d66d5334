# The two commands: `make run` and `make test`. Everything else is a helper.
.PHONY: run test bench lint clean

run:  ## set up, migrate, seed the demo and run web + worker + beat (Ctrl-C stops all three)
	@bash scripts/run.sh

test:  ## install test dependencies, make sure PostgreSQL/Redis/chromium are there, run ruff + pytest
	@bash scripts/test.sh

bench:  ## run every benchmark under bench/ and print the table (installs wrk and the bench extra)
	@bash scripts/bench.sh

lint:
	@bash scripts/bootstrap.sh test
	@.venv/bin/ruff check .
	@.venv/bin/lint-imports --no-cache

clean:
	rm -rf var .venv
