DROP SCHEMA IF EXISTS "platform_staging" CASCADE;

CREATE SCHEMA "platform_staging";

CREATE TABLE "platform_staging"."group" (
  "pk" VARCHAR(256),
  "sk" VARCHAR(256),
  "created_at" TIMESTAMPTZ,
  "languages" SUPER,
  "machine" BOOLEAN,
  "name" VARCHAR(256),
  "service" VARCHAR(256),
  "_extra" SUPER
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_staging"."vuln" (
  "pk" VARCHAR(256),
  "sk" VARCHAR(256),
  "commit_hashes" SUPER,
  "reported_at" TIMESTAMPTZ,
  "risk_exposure" DECIMAL(7,5),
  "severity" VARCHAR(256),
  "specific" BIGINT,
  "treatment" VARCHAR(256),
  "where" VARCHAR(256),
  "zero_risk" BOOLEAN,
  "_extra" SUPER
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_staging"."fin" (
  "pk" VARCHAR(256),
  "sk" VARCHAR(256),
  "cvss_vector" VARCHAR(256),
  "history" SUPER,
  "reported_at" TIMESTAMPTZ,
  "scores" SUPER,
  "severity_score" DECIMAL(2,1),
  "state" VARCHAR(256),
  "title" VARCHAR(256),
  "_extra" SUPER
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_staging"."org" (
  "pk" VARCHAR(256),
  "sk" VARCHAR(256),
  "active" BOOLEAN,
  "address" SUPER,
  "budget" DECIMAL(9,2),
  "country" VARCHAR(256),
  "created_at" TIMESTAMPTZ,
  "deleted_at" VARCHAR(256),
  "employees" BIGINT,
  "logo" VARBYTE(1024000),
  "name" VARCHAR(256),
  "tags" SUPER,
  "_extra" SUPER
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_staging"."_unclassified" (
  "pk" SUPER,
  "sk" SUPER,
  "_extra" SUPER
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_staging"."_overflow" (
  "table_name" VARCHAR(256),
  "item_key" VARCHAR(65535),
  "attribute" VARCHAR(65535),
  "chunk" BIGINT,
  "kind" VARCHAR(256),
  "value" VARBYTE(1024000)
);

CREATE TABLE "platform_staging"."_dynamo_etl_ledger" (segment INTEGER NOT NULL PRIMARY KEY, run_id VARCHAR(100) NOT NULL, loaded_at TIMESTAMPTZ NOT NULL, row_count BIGINT NOT NULL, table_counts VARCHAR(65535) NOT NULL);

CREATE TABLE "platform_staging"."_dynamo_etl_run" (run_id VARCHAR(100) NOT NULL, source_table VARCHAR(255) NOT NULL, total_segments INTEGER NOT NULL, schema_source VARCHAR(1024) NOT NULL, prepared_at TIMESTAMPTZ NOT NULL, planned_at VARCHAR(64) NOT NULL);

INSERT INTO "platform_staging"."_dynamo_etl_run" (run_id, source_table, total_segments, schema_source, prepared_at, planned_at) VALUES ('2026-11-21-nightly', 'platform', 4, 'static:schemas', GETDATE(), '2026-11-21T00:00:00Z');
