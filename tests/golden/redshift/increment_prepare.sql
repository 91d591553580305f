DROP SCHEMA IF EXISTS "platform_increment_staging" CASCADE;

CREATE SCHEMA "platform_increment_staging";

CREATE TABLE "platform_increment_staging"."group" (
  "_item_key" VARCHAR(65535),
  "_version" VARCHAR(256),
  "pk" VARCHAR(256),
  "sk" VARCHAR(256),
  "created_at" TIMESTAMPTZ,
  "languages" SUPER,
  "machine" BOOLEAN,
  "name" VARCHAR(256),
  "service" VARCHAR(256),
  "_extra" SUPER
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_increment_staging"."vuln" (
  "_item_key" VARCHAR(65535),
  "_version" VARCHAR(256),
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

CREATE TABLE "platform_increment_staging"."fin" (
  "_item_key" VARCHAR(65535),
  "_version" VARCHAR(256),
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

CREATE TABLE "platform_increment_staging"."org" (
  "_item_key" VARCHAR(65535),
  "_version" VARCHAR(256),
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

CREATE TABLE "platform_increment_staging"."_unclassified" (
  "_item_key" VARCHAR(65535),
  "_version" VARCHAR(256),
  "pk" SUPER,
  "sk" SUPER,
  "_extra" SUPER
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_increment_staging"."_overflow" (
  "_item_key" VARCHAR(65535),
  "_version" VARCHAR(256),
  "table_name" VARCHAR(256),
  "item_key" VARCHAR(65535),
  "attribute" VARCHAR(65535),
  "chunk" BIGINT,
  "kind" VARCHAR(256),
  "value" VARBYTE(1024000)
);

CREATE TABLE "platform_increment_staging"."_inc_keys_0" (
  "_item_key" VARCHAR(65535),
  "pk" VARCHAR(256),
  "sk" VARCHAR(256)
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_increment_staging"."_inc_keys_1" (
  "_item_key" VARCHAR(65535),
  "pk" VARCHAR(256),
  "sk" VARCHAR(256)
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_increment_staging"."_inc_keys_2" (
  "_item_key" VARCHAR(65535),
  "pk" VARCHAR(256),
  "sk" VARCHAR(256)
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_increment_staging"."_inc_keys_3" (
  "_item_key" VARCHAR(65535),
  "pk" VARCHAR(256),
  "sk" VARCHAR(256)
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_increment_staging"."_inc_keys_4" (
  "_item_key" VARCHAR(65535),
  "pk" SUPER,
  "sk" SUPER
) DISTKEY("pk") SORTKEY("pk", "sk");

CREATE TABLE "platform_increment_staging"."_inc_changes" (
  "_item_key" VARCHAR(65535),
  "_version" VARCHAR(256),
  "_table" VARCHAR(256)
);

CREATE TABLE "platform_increment_staging"."_dynamo_etl_ledger" (segment INTEGER NOT NULL PRIMARY KEY, run_id VARCHAR(100) NOT NULL, loaded_at TIMESTAMPTZ NOT NULL, row_count BIGINT NOT NULL, table_counts VARCHAR(65535) NOT NULL);

CREATE TABLE "platform_increment_staging"."_dynamo_etl_run" (run_id VARCHAR(100) NOT NULL, source_table VARCHAR(255) NOT NULL, total_segments INTEGER NOT NULL, schema_source VARCHAR(1024) NOT NULL, prepared_at TIMESTAMPTZ NOT NULL, planned_at VARCHAR(64) NOT NULL);

INSERT INTO "platform_increment_staging"."_dynamo_etl_run" (run_id, source_table, total_segments, schema_source, prepared_at, planned_at) VALUES ('inc-20261121T000000.000Z-20261121T010000.000Z', 'platform', 4, 'static:schemas', GETDATE(), '2026-11-21T00:00:00Z');
