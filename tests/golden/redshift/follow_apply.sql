SET statement_timeout TO 60000;

CREATE TABLE IF NOT EXISTS "platform"."_dynamo_etl_increments" (run_id VARCHAR(100) NOT NULL, base_run VARCHAR(100) NOT NULL, window_from VARCHAR(64) NOT NULL, window_to VARCHAR(64) NOT NULL, applied_at TIMESTAMPTZ NOT NULL, changes BIGINT NOT NULL);

CREATE TABLE IF NOT EXISTS "platform"."_dynamo_etl_stream_positions" (stream_arn VARCHAR(1024) NOT NULL, shard_id VARCHAR(65) NOT NULL, parent_shard_id VARCHAR(65), sequence_number VARCHAR(64), finished BOOLEAN NOT NULL, newest_record_at VARCHAR(64), skip_before VARCHAR(64), batch_id VARCHAR(100) NOT NULL, applied_at TIMESTAMPTZ NOT NULL);

LOCK TABLE "platform"."_dynamo_etl_increments";

SET statement_timeout TO 0;

SELECT stream_arn::varchar, shard_id::varchar, parent_shard_id::varchar, sequence_number::varchar, CASE WHEN finished THEN 'true' ELSE 'false' END, newest_record_at::varchar, skip_before::varchar, batch_id::varchar, applied_at::varchar FROM "platform"."_dynamo_etl_stream_positions" ORDER BY shard_id;

DELETE FROM "platform"."group" USING "platform_follow_staging"."_inc_keys_0" WHERE "platform"."group"."pk" = "platform_follow_staging"."_inc_keys_0"."pk" AND "platform"."group"."sk" = "platform_follow_staging"."_inc_keys_0"."sk";

DELETE FROM "platform"."vuln" USING "platform_follow_staging"."_inc_keys_1" WHERE "platform"."vuln"."pk" = "platform_follow_staging"."_inc_keys_1"."pk" AND "platform"."vuln"."sk" = "platform_follow_staging"."_inc_keys_1"."sk";

DELETE FROM "platform"."fin" USING "platform_follow_staging"."_inc_keys_2" WHERE "platform"."fin"."pk" = "platform_follow_staging"."_inc_keys_2"."pk" AND "platform"."fin"."sk" = "platform_follow_staging"."_inc_keys_2"."sk";

DELETE FROM "platform"."org" USING "platform_follow_staging"."_inc_keys_3" WHERE "platform"."org"."pk" = "platform_follow_staging"."_inc_keys_3"."pk" AND "platform"."org"."sk" = "platform_follow_staging"."_inc_keys_3"."sk";

DELETE FROM "platform"."_unclassified" USING "platform_follow_staging"."_inc_keys_4" WHERE JSON_SERIALIZE("platform"."_unclassified"."pk") = JSON_SERIALIZE("platform_follow_staging"."_inc_keys_4"."pk") AND JSON_SERIALIZE("platform"."_unclassified"."sk") = JSON_SERIALIZE("platform_follow_staging"."_inc_keys_4"."sk");

DELETE FROM "platform"."_overflow" WHERE "item_key" IN (SELECT "_item_key" FROM "platform_follow_staging"."_inc_changes");

INSERT INTO "platform"."group" ("pk", "sk", "created_at", "languages", "machine", "name", "service", "_extra") SELECT u."pk", u."sk", u."created_at", u."languages", u."machine", u."name", u."service", u."_extra" FROM "platform_follow_staging"."group" AS u JOIN (SELECT "_item_key", "_version", "_table" FROM (SELECT "_item_key", "_version", "_table", ROW_NUMBER() OVER (PARTITION BY "_item_key" ORDER BY "_version" DESC) AS change_rank FROM "platform_follow_staging"."_inc_changes") AS ranked WHERE change_rank = 1) AS l ON u."_item_key" = l."_item_key" AND u."_version" = l."_version" AND l."_table" = 'group';

INSERT INTO "platform"."vuln" ("pk", "sk", "commit_hashes", "reported_at", "risk_exposure", "severity", "specific", "treatment", "where", "zero_risk", "_extra") SELECT u."pk", u."sk", u."commit_hashes", u."reported_at", u."risk_exposure", u."severity", u."specific", u."treatment", u."where", u."zero_risk", u."_extra" FROM "platform_follow_staging"."vuln" AS u JOIN (SELECT "_item_key", "_version", "_table" FROM (SELECT "_item_key", "_version", "_table", ROW_NUMBER() OVER (PARTITION BY "_item_key" ORDER BY "_version" DESC) AS change_rank FROM "platform_follow_staging"."_inc_changes") AS ranked WHERE change_rank = 1) AS l ON u."_item_key" = l."_item_key" AND u."_version" = l."_version" AND l."_table" = 'vuln';

INSERT INTO "platform"."fin" ("pk", "sk", "cvss_vector", "history", "reported_at", "scores", "severity_score", "state", "title", "_extra") SELECT u."pk", u."sk", u."cvss_vector", u."history", u."reported_at", u."scores", u."severity_score", u."state", u."title", u."_extra" FROM "platform_follow_staging"."fin" AS u JOIN (SELECT "_item_key", "_version", "_table" FROM (SELECT "_item_key", "_version", "_table", ROW_NUMBER() OVER (PARTITION BY "_item_key" ORDER BY "_version" DESC) AS change_rank FROM "platform_follow_staging"."_inc_changes") AS ranked WHERE change_rank = 1) AS l ON u."_item_key" = l."_item_key" AND u."_version" = l."_version" AND l."_table" = 'fin';

INSERT INTO "platform"."org" ("pk", "sk", "active", "address", "budget", "country", "created_at", "deleted_at", "employees", "logo", "name", "tags", "_extra") SELECT u."pk", u."sk", u."active", u."address", u."budget", u."country", u."created_at", u."deleted_at", u."employees", u."logo", u."name", u."tags", u."_extra" FROM "platform_follow_staging"."org" AS u JOIN (SELECT "_item_key", "_version", "_table" FROM (SELECT "_item_key", "_version", "_table", ROW_NUMBER() OVER (PARTITION BY "_item_key" ORDER BY "_version" DESC) AS change_rank FROM "platform_follow_staging"."_inc_changes") AS ranked WHERE change_rank = 1) AS l ON u."_item_key" = l."_item_key" AND u."_version" = l."_version" AND l."_table" = 'org';

INSERT INTO "platform"."_unclassified" ("pk", "sk", "_extra") SELECT u."pk", u."sk", u."_extra" FROM "platform_follow_staging"."_unclassified" AS u JOIN (SELECT "_item_key", "_version", "_table" FROM (SELECT "_item_key", "_version", "_table", ROW_NUMBER() OVER (PARTITION BY "_item_key" ORDER BY "_version" DESC) AS change_rank FROM "platform_follow_staging"."_inc_changes") AS ranked WHERE change_rank = 1) AS l ON u."_item_key" = l."_item_key" AND u."_version" = l."_version" AND l."_table" = '_unclassified';

INSERT INTO "platform"."_overflow" ("table_name", "item_key", "attribute", "chunk", "kind", "value") SELECT u."table_name", u."item_key", u."attribute", u."chunk", u."kind", u."value" FROM "platform_follow_staging"."_overflow" AS u JOIN (SELECT "_item_key", "_version", "_table" FROM (SELECT "_item_key", "_version", "_table", ROW_NUMBER() OVER (PARTITION BY "_item_key" ORDER BY "_version" DESC) AS change_rank FROM "platform_follow_staging"."_inc_changes") AS ranked WHERE change_rank = 1) AS l ON u."_item_key" = l."_item_key" AND u."_version" = l."_version";

DELETE FROM "platform"."_dynamo_etl_stream_positions";

INSERT INTO "platform"."_dynamo_etl_stream_positions" (stream_arn, shard_id, parent_shard_id, sequence_number, finished, newest_record_at, skip_before, batch_id, applied_at) VALUES ('arn:aws:dynamodb:us-east-1:123456789012:table/platform/stream/2026-11-20T00:00:00.000', 'shardId-00000001763600000000-aaaaaaaa', NULL, '4200', TRUE, '2026-11-21T00:00:09.000Z', NULL, 'fol-w-20261121T000010.000000Z', GETDATE()), ('arn:aws:dynamodb:us-east-1:123456789012:table/platform/stream/2026-11-20T00:00:00.000', 'shardId-00000001763680000000-bbbbbbbb', 'shardId-00000001763600000000-aaaaaaaa', '4300', FALSE, '2026-11-21T00:00:09.000Z', NULL, 'fol-w-20261121T000010.000000Z', GETDATE());

DROP SCHEMA IF EXISTS "platform_follow_staging" CASCADE;
