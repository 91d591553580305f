SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(h0) AS VARCHAR), CAST(COUNT(h1) AS VARCHAR), CAST(COUNT(h2) AS VARCHAR), CAST(COUNT(h3) AS VARCHAR), CAST(COUNT(h4) AS VARCHAR), CAST(COALESCE(SUM(CAST(STRTOL(h4, 16) AS DECIMAL(38,0))), 0) AS VARCHAR), CAST(COUNT(h5) AS VARCHAR), CAST(COUNT(h6) AS VARCHAR), CAST(COUNT(h7) AS VARCHAR) FROM (SELECT CASE WHEN "pk" IS NULL THEN NULL ELSE 1 END AS h0, CASE WHEN "sk" IS NULL THEN NULL ELSE 1 END AS h1, CASE WHEN "created_at" IS NULL THEN NULL ELSE 1 END AS h2, CASE WHEN "languages" IS NULL THEN NULL ELSE 1 END AS h3, LEFT(MD5(CASE "machine" WHEN TRUE THEN 'true' WHEN FALSE THEN 'false' END), 15) AS h4, CASE WHEN "name" IS NULL THEN NULL ELSE 1 END AS h5, CASE WHEN "service" IS NULL THEN NULL ELSE 1 END AS h6, CASE WHEN "_extra" IS NULL THEN NULL ELSE 1 END AS h7 FROM "platform_staging"."group") AS v;

SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(h0) AS VARCHAR), CAST(COUNT(h1) AS VARCHAR), CAST(COUNT(h2) AS VARCHAR), CAST(COUNT(h3) AS VARCHAR), CAST(COUNT(h4) AS VARCHAR), CAST(COUNT(h5) AS VARCHAR), CAST(COUNT(h6) AS VARCHAR), CAST(COUNT(h7) AS VARCHAR), CAST(COUNT(h8) AS VARCHAR), CAST(COUNT(h9) AS VARCHAR), CAST(COALESCE(SUM(CAST(STRTOL(h9, 16) AS DECIMAL(38,0))), 0) AS VARCHAR), CAST(COUNT(h10) AS VARCHAR) FROM (SELECT CASE WHEN "pk" IS NULL THEN NULL ELSE 1 END AS h0, CASE WHEN "sk" IS NULL THEN NULL ELSE 1 END AS h1, CASE WHEN "commit_hashes" IS NULL THEN NULL ELSE 1 END AS h2, CASE WHEN "reported_at" IS NULL THEN NULL ELSE 1 END AS h3, CASE WHEN "risk_exposure" IS NULL THEN NULL ELSE 1 END AS h4, CASE WHEN "severity" IS NULL THEN NULL ELSE 1 END AS h5, CASE WHEN "specific" IS NULL THEN NULL ELSE 1 END AS h6, CASE WHEN "treatment" IS NULL THEN NULL ELSE 1 END AS h7, CASE WHEN "where" IS NULL THEN NULL ELSE 1 END AS h8, LEFT(MD5(CASE "zero_risk" WHEN TRUE THEN 'true' WHEN FALSE THEN 'false' END), 15) AS h9, CASE WHEN "_extra" IS NULL THEN NULL ELSE 1 END AS h10 FROM "platform_staging"."vuln") AS v;

SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(h0) AS VARCHAR), CAST(COUNT(h1) AS VARCHAR), CAST(COUNT(h2) AS VARCHAR), CAST(COUNT(h3) AS VARCHAR), CAST(COUNT(h4) AS VARCHAR), CAST(COUNT(h5) AS VARCHAR), CAST(COUNT(h6) AS VARCHAR), CAST(COUNT(h7) AS VARCHAR), CAST(COUNT(h8) AS VARCHAR), CAST(COUNT(h9) AS VARCHAR) FROM (SELECT CASE WHEN "pk" IS NULL THEN NULL ELSE 1 END AS h0, CASE WHEN "sk" IS NULL THEN NULL ELSE 1 END AS h1, CASE WHEN "cvss_vector" IS NULL THEN NULL ELSE 1 END AS h2, CASE WHEN "history" IS NULL THEN NULL ELSE 1 END AS h3, CASE WHEN "reported_at" IS NULL THEN NULL ELSE 1 END AS h4, CASE WHEN "scores" IS NULL THEN NULL ELSE 1 END AS h5, CASE WHEN "severity_score" IS NULL THEN NULL ELSE 1 END AS h6, CASE WHEN "state" IS NULL THEN NULL ELSE 1 END AS h7, CASE WHEN "title" IS NULL THEN NULL ELSE 1 END AS h8, CASE WHEN "_extra" IS NULL THEN NULL ELSE 1 END AS h9 FROM "platform_staging"."fin") AS v;

SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(h0) AS VARCHAR), CAST(COUNT(h1) AS VARCHAR), CAST(COUNT(h2) AS VARCHAR), CAST(COALESCE(SUM(CAST(STRTOL(h2, 16) AS DECIMAL(38,0))), 0) AS VARCHAR), CAST(COUNT(h3) AS VARCHAR), CAST(COUNT(h4) AS VARCHAR), CAST(COUNT(h5) AS VARCHAR), CAST(COUNT(h6) AS VARCHAR), CAST(COUNT(h7) AS VARCHAR), CAST(COUNT(h8) AS VARCHAR), CAST(COUNT(h9) AS VARCHAR), CAST(COUNT(h10) AS VARCHAR), CAST(COUNT(h11) AS VARCHAR), CAST(COUNT(h12) AS VARCHAR) FROM (SELECT CASE WHEN "pk" IS NULL THEN NULL ELSE 1 END AS h0, CASE WHEN "sk" IS NULL THEN NULL ELSE 1 END AS h1, LEFT(MD5(CASE "active" WHEN TRUE THEN 'true' WHEN FALSE THEN 'false' END), 15) AS h2, CASE WHEN "address" IS NULL THEN NULL ELSE 1 END AS h3, CASE WHEN "budget" IS NULL THEN NULL ELSE 1 END AS h4, CASE WHEN "country" IS NULL THEN NULL ELSE 1 END AS h5, CASE WHEN "created_at" IS NULL THEN NULL ELSE 1 END AS h6, CASE WHEN "deleted_at" IS NULL THEN NULL ELSE 1 END AS h7, CASE WHEN "employees" IS NULL THEN NULL ELSE 1 END AS h8, CASE WHEN "logo" IS NULL THEN NULL ELSE 1 END AS h9, CASE WHEN "name" IS NULL THEN NULL ELSE 1 END AS h10, CASE WHEN "tags" IS NULL THEN NULL ELSE 1 END AS h11, CASE WHEN "_extra" IS NULL THEN NULL ELSE 1 END AS h12 FROM "platform_staging"."org") AS v;

SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(h0) AS VARCHAR), CAST(COUNT(h1) AS VARCHAR), CAST(COUNT(h2) AS VARCHAR) FROM (SELECT CASE WHEN "pk" IS NULL THEN NULL ELSE 1 END AS h0, CASE WHEN "sk" IS NULL THEN NULL ELSE 1 END AS h1, CASE WHEN "_extra" IS NULL THEN NULL ELSE 1 END AS h2 FROM "platform_staging"."_unclassified") AS v;

SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(h0) AS VARCHAR), CAST(COUNT(h1) AS VARCHAR), CAST(COUNT(h2) AS VARCHAR), CAST(COUNT(h3) AS VARCHAR), CAST(COUNT(h4) AS VARCHAR), CAST(COUNT(h5) AS VARCHAR) FROM (SELECT CASE WHEN "table_name" IS NULL THEN NULL ELSE 1 END AS h0, CASE WHEN "item_key" IS NULL THEN NULL ELSE 1 END AS h1, CASE WHEN "attribute" IS NULL THEN NULL ELSE 1 END AS h2, CASE WHEN "chunk" IS NULL THEN NULL ELSE 1 END AS h3, CASE WHEN "kind" IS NULL THEN NULL ELSE 1 END AS h4, CASE WHEN "value" IS NULL THEN NULL ELSE 1 END AS h5 FROM "platform_staging"."_overflow") AS v;

CREATE TABLE "platform_staging"."_dynamo_etl_fingerprints" (
  "table_name" VARCHAR(256),
  "column_name" VARCHAR(256),
  "count" DECIMAL(38,0),
  "digest" DECIMAL(38,0),
  "proof" VARCHAR(256)
);

INSERT INTO "platform_staging"."_dynamo_etl_fingerprints" ("table_name", "column_name", "count", "digest", "proof") VALUES
  ('group', '(rows)', 0, NULL, 'proven'),
  ('group', 'pk', 0, NULL, 'count-only'),
  ('group', 'sk', 0, NULL, 'count-only'),
  ('group', 'created_at', 0, NULL, 'count-only'),
  ('group', 'languages', 0, NULL, 'count-only'),
  ('group', 'machine', 0, 0, 'proven'),
  ('group', 'name', 0, NULL, 'count-only'),
  ('group', 'service', 0, NULL, 'count-only'),
  ('group', '_extra', 0, NULL, 'count-only'),
  ('group', '(row digest)', 0, NULL, 'count-only'),
  ('vuln', '(rows)', 0, NULL, 'proven'),
  ('vuln', 'pk', 0, NULL, 'count-only'),
  ('vuln', 'sk', 0, NULL, 'count-only'),
  ('vuln', 'commit_hashes', 0, NULL, 'count-only'),
  ('vuln', 'reported_at', 0, NULL, 'count-only'),
  ('vuln', 'risk_exposure', 0, NULL, 'count-only'),
  ('vuln', 'severity', 0, NULL, 'count-only'),
  ('vuln', 'specific', 0, NULL, 'count-only'),
  ('vuln', 'treatment', 0, NULL, 'count-only'),
  ('vuln', 'where', 0, NULL, 'count-only'),
  ('vuln', 'zero_risk', 0, 0, 'proven'),
  ('vuln', '_extra', 0, NULL, 'count-only'),
  ('vuln', '(row digest)', 0, NULL, 'count-only'),
  ('fin', '(rows)', 0, NULL, 'proven'),
  ('fin', 'pk', 0, NULL, 'count-only'),
  ('fin', 'sk', 0, NULL, 'count-only'),
  ('fin', 'cvss_vector', 0, NULL, 'count-only'),
  ('fin', 'history', 0, NULL, 'count-only'),
  ('fin', 'reported_at', 0, NULL, 'count-only'),
  ('fin', 'scores', 0, NULL, 'count-only'),
  ('fin', 'severity_score', 0, NULL, 'count-only'),
  ('fin', 'state', 0, NULL, 'count-only'),
  ('fin', 'title', 0, NULL, 'count-only'),
  ('fin', '_extra', 0, NULL, 'count-only'),
  ('fin', '(row digest)', 0, NULL, 'count-only'),
  ('org', '(rows)', 0, NULL, 'proven'),
  ('org', 'pk', 0, NULL, 'count-only'),
  ('org', 'sk', 0, NULL, 'count-only'),
  ('org', 'active', 0, 0, 'proven'),
  ('org', 'address', 0, NULL, 'count-only'),
  ('org', 'budget', 0, NULL, 'count-only'),
  ('org', 'country', 0, NULL, 'count-only'),
  ('org', 'created_at', 0, NULL, 'count-only'),
  ('org', 'deleted_at', 0, NULL, 'count-only'),
  ('org', 'employees', 0, NULL, 'count-only'),
  ('org', 'logo', 0, NULL, 'count-only'),
  ('org', 'name', 0, NULL, 'count-only'),
  ('org', 'tags', 0, NULL, 'count-only'),
  ('org', '_extra', 0, NULL, 'count-only'),
  ('org', '(row digest)', 0, NULL, 'count-only'),
  ('_unclassified', '(rows)', 0, NULL, 'proven'),
  ('_unclassified', 'pk', 0, NULL, 'count-only'),
  ('_unclassified', 'sk', 0, NULL, 'count-only'),
  ('_unclassified', '_extra', 0, NULL, 'count-only'),
  ('_unclassified', '(row digest)', 0, NULL, 'count-only'),
  ('_overflow', '(rows)', 0, NULL, 'proven'),
  ('_overflow', 'table_name', 0, NULL, 'count-only'),
  ('_overflow', 'item_key', 0, NULL, 'count-only'),
  ('_overflow', 'attribute', 0, NULL, 'count-only'),
  ('_overflow', 'chunk', 0, NULL, 'count-only'),
  ('_overflow', 'kind', 0, NULL, 'count-only'),
  ('_overflow', 'value', 0, NULL, 'count-only'),
  ('_overflow', '(row digest)', 0, NULL, 'count-only');
