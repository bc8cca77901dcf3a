"""Validates XTCE files against the XTCE 1.2 schema that scripts/setup-xtce.sh put in the Kestrel
cache; prints each violation with its path and exits 1 if there is one. Run with the venv's Python
that setup-xtce.sh made (it has xmlschema). No network: the schema's XML-namespace import is
xmlschema's own copy."""
import sys

import xmlschema

schema_path, *documents = sys.argv[1:]
schema = xmlschema.XMLSchema(schema_path, allow="local")
invalid = 0
for document in documents:
    errors = list(schema.iter_errors(document))
    for error in errors:
        print(f"{document}: {error.path}: {error.reason}")
    invalid += bool(errors)
    if not errors:
        print(f"{document}: valid XTCE 1.2")
sys.exit(1 if invalid else 0)
