//! What DescribeTable says about a source table's size and read capacity: the inputs of an
//! estimate of what a full scan costs and takes.

use aws_sdk_dynamodb::types::{BillingMode, TableDescription};

use super::{DynamoDb, ScanError};
use crate::retry::{sdk_failure, RetryPolicy};

/// How a table pays for reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Billing {
    /// Capacity mode PROVISIONED: reads beyond `read_capacity` units per second are throttled.
    Provisioned { read_capacity: u64 },
    /// Capacity mode PAY_PER_REQUEST: billed per read request unit; `max_read_units` is the
    /// table's optional on-demand ceiling (OnDemandThroughput.MaxReadRequestUnits).
    OnDemand { max_read_units: Option<u64> },
}

/// A table's size and capacity as DescribeTable reports them. DynamoDB refreshes ItemCount and
/// TableSizeBytes only about every six hours, so both may lag recent writes
/// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TableDescription.html).
#[derive(Debug, Clone, PartialEq)]
pub struct TableFacts {
    pub table: String,
    pub item_count: u64,
    pub size_bytes: u64,
    pub billing: Billing,
}

impl TableFacts {
    /// Reads the facts out of a DescribeTable answer.
    ///
    /// A table created without a billing mode may answer without a BillingModeSummary
    /// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BillingModeSummary.html);
    /// such a table has the default mode, PROVISIONED
    /// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html#DDB-CreateTable-request-BillingMode). A MaxReadRequestUnits of -1 or 0 means no ceiling
    /// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_OnDemandThroughput.html).
    pub fn from_description(table: &str, description: &TableDescription) -> TableFacts {
        let non_negative = |n: Option<i64>| n.unwrap_or(0).max(0) as u64;
        let on_demand = description
            .billing_mode_summary()
            .and_then(|s| s.billing_mode())
            == Some(&BillingMode::PayPerRequest);
        let billing = if on_demand {
            Billing::OnDemand {
                max_read_units: description
                    .on_demand_throughput()
                    .and_then(|t| t.max_read_request_units())
                    .filter(|n| *n > 0)
                    .map(|n| n as u64),
            }
        } else {
            Billing::Provisioned {
                read_capacity: non_negative(
                    description
                        .provisioned_throughput()
                        .and_then(|p| p.read_capacity_units()),
                ),
            }
        };
        TableFacts {
            table: table.to_string(),
            item_count: non_negative(description.item_count()),
            size_bytes: non_negative(description.table_size_bytes()),
            billing,
        }
    }
}

/// DescribeTable of `table`, with the shared retry policy: its size and read capacity.
pub async fn describe_table(
    dynamodb: &DynamoDb,
    table: &str,
    retry: &RetryPolicy,
) -> Result<TableFacts, ScanError> {
    let description = describe(dynamodb, table, retry).await?;
    Ok(TableFacts::from_description(table, &description))
}

/// DescribeTable's description of `table`. A missing table is fatal; throttling, 5xx and an
/// endpoint that does not answer are worth a retry.
pub async fn describe(
    dynamodb: &DynamoDb,
    table: &str,
    retry: &RetryPolicy,
) -> Result<TableDescription, ScanError> {
    let out = retry
        .run_sdk(
            || dynamodb.client.describe_table().table_name(table).send(),
            |e, delay| {
                tracing::warn!(table, delay_ms = delay.as_millis() as u64, error = %dynamodb.describe(e),
                    "DescribeTable failed; retrying")
            },
        )
        .await
        .map_err(|e| {
            let not_found = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception());
            ScanError::Table {
                table: table.to_string(),
                detail: if not_found {
                    format!(
                        "no such table at {}; check --table and --region",
                        dynamodb.endpoint
                    )
                } else {
                    format!("DescribeTable failed: {}", dynamodb.describe(&e))
                },
                retriable: !not_found && sdk_failure(&e).is_retriable(),
            }
        })?;
    out.table.ok_or_else(|| ScanError::Table {
        table: table.to_string(),
        detail: format!(
            "DescribeTable at {} answered without a table description",
            dynamodb.endpoint
        ),
        retriable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{
        BillingModeSummary, OnDemandThroughput, ProvisionedThroughputDescription,
    };

    #[test]
    fn a_table_without_a_billing_summary_is_provisioned() {
        let description = TableDescription::builder()
            .item_count(1200)
            .table_size_bytes(5_000_000)
            .provisioned_throughput(
                ProvisionedThroughputDescription::builder()
                    .read_capacity_units(250)
                    .build(),
            )
            .build();
        assert_eq!(
            TableFacts::from_description("orders", &description),
            TableFacts {
                table: "orders".into(),
                item_count: 1200,
                size_bytes: 5_000_000,
                billing: Billing::Provisioned { read_capacity: 250 },
            }
        );
    }

    #[test]
    fn an_on_demand_table_keeps_its_ceiling_and_minus_one_means_none() {
        let on_demand = |max: Option<i64>| {
            let mut b = TableDescription::builder()
                .billing_mode_summary(
                    BillingModeSummary::builder()
                        .billing_mode(BillingMode::PayPerRequest)
                        .build(),
                )
                // On-demand tables report zero provisioned units; they must not be read as a cap.
                .provisioned_throughput(
                    ProvisionedThroughputDescription::builder()
                        .read_capacity_units(0)
                        .build(),
                );
            if let Some(max) = max {
                b = b.on_demand_throughput(
                    OnDemandThroughput::builder()
                        .max_read_request_units(max)
                        .build(),
                );
            }
            TableFacts::from_description("t", &b.build()).billing
        };
        assert_eq!(
            on_demand(None),
            Billing::OnDemand {
                max_read_units: None
            }
        );
        assert_eq!(
            on_demand(Some(-1)),
            Billing::OnDemand {
                max_read_units: None
            }
        );
        assert_eq!(
            on_demand(Some(4000)),
            Billing::OnDemand {
                max_read_units: Some(4000)
            }
        );
    }

    #[test]
    fn missing_or_negative_figures_read_as_zero() {
        let description = TableDescription::builder().item_count(-5).build();
        let facts = TableFacts::from_description("t", &description);
        assert_eq!((facts.item_count, facts.size_bytes), (0, 0));
        assert_eq!(facts.billing, Billing::Provisioned { read_capacity: 0 });
    }
}
