SET analyze_threshold_percent TO 0;

ANALYZE "platform_staging"."group";

ANALYZE "platform_staging"."vuln";

ANALYZE "platform_staging"."fin";

ANALYZE "platform_staging"."org";

ANALYZE "platform_staging"."_unclassified";

ANALYZE "platform_staging"."_overflow";
