"""catalog: index AI image-generation projects (sandbox + final folders) into
SQL and export preference-training rows.

The package follows the pipeline, one module per stage (see README.md, "How
it is built"): projects -> scan -> names -> images -> grouping -> matching ->
sync -> views -> export; cli.py is the command line, migrations/ the schema.
Importing the package imports nothing else, so `catalog --help` stays fast.
"""
