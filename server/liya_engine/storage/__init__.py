"""Storage: SQLAlchemy async tables, a repository/unit of work, migrations."""
