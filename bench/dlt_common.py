"""What bench/dlt_load.py and bench/dlt_rest.py share: a dlt pipeline into one SQLite file."""
import os
import sys


def load_into_sqlite(data, db: str, pipelines_dir: str, pipeline_name: str) -> None:
    """Runs `data` (a dlt source or resource) into SQLite file `db` through the sqlalchemy
    destination: dataset `main` (the tables land in `db` itself), primary keys created.
    Prints the load info on stderr; raises if any load job failed."""
    import dlt
    from dlt.destinations import sqlalchemy

    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        pipelines_dir=pipelines_dir,
        destination=sqlalchemy(credentials="sqlite:///" + db, create_primary_keys=True),
        dataset_name="main",
        progress="log" if os.environ.get("DLT_BENCH_PROGRESS") else None,
    )
    info = pipeline.run(data)
    print(info, file=sys.stderr)
    info.raise_on_failed_jobs()
