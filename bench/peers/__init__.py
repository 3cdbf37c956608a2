"""The contenders kindle_store is measured against: `orm` (SQLAlchemy 2.0), `floor` (raw psycopg), `jsonfile`."""
