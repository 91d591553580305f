SET query_group TO 'dynamo-etl';

LOCK "platform_staging"."_dynamo_etl_ledger";

INSERT INTO "platform_staging"."_dynamo_etl_ledger" (segment, run_id, loaded_at, row_count, table_counts) SELECT 2, '2026-11-21-nightly', GETDATE(), -1, '' WHERE NOT EXISTS (SELECT 1 FROM "platform_staging"."_dynamo_etl_ledger" WHERE segment = 2);

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."_overflow" ("table_name", "item_key", "attribute", "chunk", "kind", "value") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/2/_overflow.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV ZSTD NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."_unclassified" ("pk", "sk", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/2/_unclassified.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV GZIP NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."fin" ("pk", "sk", "cvss_vector", "history", "reported_at", "scores", "severity_score", "state", "title", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/2/fin.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV ZSTD NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."group" ("pk", "sk", "created_at", "languages", "machine", "name", "service", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/2/group.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV GZIP NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."org" ("pk", "sk", "active", "address", "budget", "country", "created_at", "deleted_at", "employees", "logo", "name", "tags", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/2/org.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV ZSTD NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."vuln" ("pk", "sk", "commit_hashes", "reported_at", "risk_exposure", "severity", "specific", "treatment", "where", "zero_risk", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/2/vuln.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV GZIP NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

UPDATE "platform_staging"."_dynamo_etl_ledger" SET row_count = 500, table_counts = '{"org":20,"vuln":480}', loaded_at = GETDATE() WHERE segment = 2;
