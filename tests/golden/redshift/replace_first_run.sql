SET statement_timeout TO 60000;

LOCK TABLE "platform_staging"."_dynamo_etl_ledger";

SET statement_timeout TO 0;

SET statement_timeout TO 60000;

DROP SCHEMA IF EXISTS "platform_previous" CASCADE;

ALTER SCHEMA "platform_staging" RENAME TO "platform";

GRANT USAGE ON SCHEMA "platform" TO GROUP "analysts";

GRANT SELECT ON ALL TABLES IN SCHEMA "platform" TO GROUP "analysts";

GRANT USAGE ON SCHEMA "platform" TO ROLE "bi_reader";

GRANT SELECT ON ALL TABLES IN SCHEMA "platform" TO ROLE "bi_reader";

GRANT USAGE ON SCHEMA "platform" TO "etl_reader";

GRANT SELECT ON ALL TABLES IN SCHEMA "platform" TO "etl_reader";

SET statement_timeout TO 0;

INSERT INTO "analytics"."swaps" SELECT COUNT(*) FROM "platform"."org";
