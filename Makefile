# The two commands of the README, and the checks CI runs.
.PHONY: run test lint build

# Start ocrd on the embedded defaults (SQLite, local blobs). For now this applies the migrations;
# later modes make it `ocrd all-in-one`.
run:
	cargo build --release
	./target/release/ocrd migrate

# The whole suite, with PostgreSQL, Redis and an S3 + KMS server (moto) brought up as needed.
test:
	scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

build:
	cargo build --release
