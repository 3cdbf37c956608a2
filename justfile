# kindle_store tasks. Settings come from .env (pick another with: just --dotenv-path .env.staging <recipe>).
set dotenv-load := true
# arguments reach the commands as "$@", each one word however many spaces or quotes it holds
set positional-arguments := true

python := env_var_or_default("PYTHON", "python")
# just has loaded the dotenv file already: the CLI must not fill in what that file leaves out from .env
ks := "kindle-store --env-file /dev/null"

# list the recipes
default:
    @just --list

# install the package with its development tools
install:
    {{python}} -m pip install -e '.[dev,bench]'

# the whole test suite against real PostgreSQL (KINDLE_STORE_TEST_DSN, else Docker, else embedded)
test *ARGS:
    {{python}} -m pytest "$@"

# ruff and mypy --strict
lint:
    ruff check kindle_store tests bench
    mypy kindle_store bench

# bring the schema to the newest version
migrate:
    @{{ks}} migrate

# undo the newest migration
rollback:
    @{{ks}} migrate --rollback

# import users.json (default $KINDLE_USERS_JSON, then user_data/users.json)
import-json PATH="" *FLAGS:
    @{{ks}} import-json "$@"

# write users.json from the database (stdout, or -o PATH)
export-json *ARGS:
    @{{ks}} export-json "$@"

# compare users.json with the database
verify PATH="":
    @{{ks}} verify "$@"

# import / export vnc_instance_map.json
import-vnc PATH="" *FLAGS:
    @{{ks}} import-vnc "$@"

export-vnc *ARGS:
    @{{ks}} export-vnc "$@"

# monitoring and health
stats *ARGS:
    @{{ks}} stats "$@"

doctor:
    @{{ks}} doctor

# pg_dump of the schema to backups/kindle_<schema>_<UTC time>.dump
db-backup *ARGS:
    @{{ks}} backup "$@"

# restore a dump (add --clean to replace a schema that holds data)
db-restore FILE *ARGS:
    @{{ks}} restore "$@"

# the benchmarks, side by side with the alternatives (--quick for a short run)
bench *ARGS:
    @{{python}} -m bench "$@"
