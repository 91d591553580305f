SET query_group TO 'dynamo-etl';

LOCK TABLE "platform_staging"."_dynamo_etl_ledger";

SELECT segment::varchar FROM "platform_staging"."_dynamo_etl_ledger" WHERE row_count >= 0;

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."_overflow" ("table_name", "item_key", "attribute", "chunk", "kind", "value") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/all/_overflow.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV ZSTD NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."_unclassified" ("pk", "sk", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/all/_unclassified.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV GZIP NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."fin" ("pk", "sk", "cvss_vector", "history", "reported_at", "scores", "severity_score", "state", "title", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/all/fin.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV ZSTD NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."group" ("pk", "sk", "created_at", "languages", "machine", "name", "service", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/all/group.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV GZIP NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."org" ("pk", "sk", "active", "address", "budget", "country", "created_at", "deleted_at", "employees", "logo", "name", "tags", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/all/org.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV ZSTD NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

SELECT pg_backend_pid()::varchar, GETDATE()::varchar;

COPY "platform_staging"."vuln" ("pk", "sk", "commit_hashes", "reported_at", "risk_exposure", "severity", "specific", "treatment", "where", "zero_risk", "_extra") FROM 's3://etl-bucket/dynamo-etl/runs/2026-11-21-nightly/load/all/vuln.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/dynamo-etl-copy' MANIFEST FORMAT AS CSV GZIP NULL AS '\\N' TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF REGION 'eu-west-1';

SELECT pg_last_copy_count();

INSERT INTO "platform_staging"."_dynamo_etl_ledger" (segment, run_id, loaded_at, row_count, table_counts) VALUES (0, '2026-11-21-nightly', GETDATE(), 500, '{"org":20,"vuln":480}'), (1, '2026-11-21-nightly', GETDATE(), 501, '{"org":21,"vuln":480}'), (3, '2026-11-21-nightly', GETDATE(), 503, '{"org":23,"vuln":480}');
