//! The EC2 subset for block volumes over the Query protocol (EC2 API Reference, version
//! 2016-11-15): lowerCamel elements, lists as `<item>`s, no `<Result>` wrapper.

use atrest_kms::RequestContext;
use atrest_sigv4::format_iso8601;
use atrest_volume::{
    Attachment, Ec2Error, Filter, NewVolume, Page, SnapshotRecord, VolumeRecord, Volumes,
};

use super::Params;
use super::xml::{QueryError, element, escape};
use crate::query::xml::EC2_NAMESPACE;

/// Runs `Action` and returns the XML response body.
pub fn dispatch(
    volumes: &Volumes,
    ctx: &RequestContext,
    params: &Params,
    request_id: &str,
) -> Result<String, QueryError> {
    let action = params.required("Action")?;
    if params.get("DryRun") == Some("true") {
        return Err(dry_run(volumes, ctx, action));
    }
    let body = match action {
        "CreateVolume" => {
            let request = NewVolume {
                size_gib: number(params, "Size")?,
                snapshot_id: params.get("SnapshotId").map(str::to_owned),
                kms_key_id: params.get("KmsKeyId").map(str::to_owned),
                volume_type: params.get("VolumeType").map(str::to_owned),
                availability_zone: params.get("AvailabilityZone").map(str::to_owned),
                tags: tags_for(params, "volume"),
            };
            volume_fields(&volumes.create_volume(ctx, request)?)
        }
        "DescribeVolumes" => {
            let (found, next) = volumes.describe_volumes(
                ctx,
                &params.list("VolumeId"),
                &filters(params),
                &page(params)?,
            )?;
            let items: String = found
                .iter()
                .map(|record| format!("<item>{}</item>", volume_fields(record)))
                .collect();
            format!("<volumeSet>{items}</volumeSet>{}", next_token(next))
        }
        "DeleteVolume" => {
            volumes.delete_volume(ctx, params.required("VolumeId")?)?;
            "<return>true</return>".to_owned()
        }
        "AttachVolume" => {
            let (record, attachment) = volumes.attach_volume(
                ctx,
                params.required("VolumeId")?,
                params.required("InstanceId")?,
                params.required("Device")?,
            )?;
            attachment_fields(&record.id, &attachment, "attached")
        }
        "DetachVolume" => {
            let (record, attachment) = volumes.detach_volume(
                ctx,
                params.required("VolumeId")?,
                params.get("InstanceId"),
                params.get("Device"),
            )?;
            attachment_fields(&record.id, &attachment, "detached")
        }
        "CreateSnapshot" => {
            let record = volumes.create_snapshot(
                ctx,
                params.required("VolumeId")?,
                params.get("Description").map(str::to_owned),
                tags_for(params, "snapshot"),
            )?;
            snapshot_fields(&record, volumes.account())
        }
        "CopySnapshot" => {
            let record = volumes.copy_snapshot(
                ctx,
                params.required("SourceSnapshotId")?,
                params.get("Description").map(str::to_owned),
                params.get("KmsKeyId"),
                tags_for(params, "snapshot"),
            )?;
            format!(
                "{}{}",
                element("snapshotId", &record.id),
                tag_set(&record.tags)
            )
        }
        "DescribeSnapshots" => {
            let owners = params.list("OwnerId");
            let own = owners
                .iter()
                .all(|owner| owner == "self" || owner == volumes.account());
            let (found, next) = volumes.describe_snapshots(
                ctx,
                &params.list("SnapshotId"),
                &filters(params),
                &page(params)?,
            )?;
            let items: String = found
                .iter()
                .filter(|_| own)
                .map(|record| {
                    format!(
                        "<item>{}</item>",
                        snapshot_fields(record, volumes.account())
                    )
                })
                .collect();
            format!("<snapshotSet>{items}</snapshotSet>{}", next_token(next))
        }
        "DeleteSnapshot" => {
            volumes.delete_snapshot(ctx, params.required("SnapshotId")?)?;
            "<return>true</return>".to_owned()
        }
        "EnableEbsEncryptionByDefault" | "GetEbsEncryptionByDefault" => {
            let enabled = volumes.encryption_by_default(ctx, action)?;
            format!(
                "{}<sseType>sse-ebs</sseType>",
                element("ebsEncryptionByDefault", &enabled.to_string())
            )
        }
        "DisableEbsEncryptionByDefault" => {
            return Err(Ec2Error::unsupported(
                "atrest encrypts every volume; encryption by default cannot be disabled",
            )
            .into());
        }
        "GetEbsDefaultKmsKeyId" => element("kmsKeyId", &volumes.default_kms_key(ctx)?),
        "ModifyEbsDefaultKmsKeyId" => element(
            "kmsKeyId",
            &volumes.set_default_kms_key(ctx, params.required("KmsKeyId")?)?,
        ),
        "ResetEbsDefaultKmsKeyId" => element("kmsKeyId", &volumes.reset_default_kms_key(ctx)?),
        other => {
            return Err(QueryError {
                code: "InvalidAction".into(),
                status: 400,
                message: format!("The action {other} is not valid for this web service."),
            });
        }
    };
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{EC2_NAMESPACE}\">\
         <requestId>{request_id}</requestId>{body}</{action}Response>\n"
    ))
}

/// `DryRun=true`: EC2 answers DryRunOperation (412) if the caller may act, else
/// UnauthorizedOperation, and does nothing.
fn dry_run(volumes: &Volumes, ctx: &RequestContext, action: &str) -> QueryError {
    match volumes.check_permission(ctx, action) {
        Ok(()) => QueryError {
            code: "DryRunOperation".into(),
            status: 412,
            message: "Request would have succeeded, but DryRun flag is set.".into(),
        },
        Err(error) => error.into(),
    }
}

impl From<Ec2Error> for QueryError {
    fn from(error: Ec2Error) -> Self {
        Self {
            code: error.code,
            status: error.status,
            message: error.message,
        }
    }
}

fn volume_fields(record: &VolumeRecord) -> String {
    let attachments: String = record
        .attachment
        .iter()
        .map(|attachment| {
            format!(
                "<item>{}<deleteOnTermination>false</deleteOnTermination></item>",
                attachment_fields(&record.id, attachment, "attached")
            )
        })
        .collect();
    format!(
        "{}{}{}{}{}{}<attachmentSet>{attachments}</attachmentSet>{}<encrypted>true</encrypted>{}{}\
         <multiAttachEnabled>false</multiAttachEnabled>",
        element("volumeId", &record.id),
        element("size", &record.size_gib.to_string()),
        element("snapshotId", record.snapshot_id.as_deref().unwrap_or("")),
        element("availabilityZone", &record.availability_zone),
        element("status", record.state.as_str()),
        element("createTime", &format_iso8601(record.create_time)),
        element("volumeType", &record.volume_type),
        element("kmsKeyId", &record.key.kms_key_arn),
        tag_set(&record.tags),
    )
}

fn attachment_fields(volume_id: &str, attachment: &Attachment, status: &str) -> String {
    format!(
        "{}{}{}{}{}",
        element("volumeId", volume_id),
        element("instanceId", &attachment.instance_id),
        element("device", &attachment.device),
        element("status", status),
        element("attachTime", &format_iso8601(attachment.attach_time)),
    )
}

fn snapshot_fields(record: &SnapshotRecord, account: &str) -> String {
    let progress = if record.state == atrest_volume::SnapshotState::Completed {
        "100%"
    } else {
        "0%"
    };
    format!(
        "{}{}{}{}{}{}{}{}<encrypted>true</encrypted>{}{}",
        element("snapshotId", &record.id),
        element("volumeId", &record.volume_id),
        element("status", record.state.as_str()),
        element("startTime", &format_iso8601(record.start_time)),
        element("progress", progress),
        element("ownerId", account),
        element("volumeSize", &record.volume_size_gib.to_string()),
        element("description", &record.description),
        element("kmsKeyId", &record.key.kms_key_arn),
        tag_set(&record.tags),
    )
}

fn tag_set(tags: &[(String, String)]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let items: String = tags
        .iter()
        .map(|(key, value)| {
            format!(
                "<item>{}{}</item>",
                element("key", key),
                element("value", value)
            )
        })
        .collect();
    format!("<tagSet>{items}</tagSet>")
}

fn next_token(token: Option<String>) -> String {
    token
        .map(|token| format!("<nextToken>{}</nextToken>", escape(&token)))
        .unwrap_or_default()
}

fn number(params: &Params, name: &str) -> Result<Option<u64>, QueryError> {
    params
        .get(name)
        .map(|text| {
            text.parse().map_err(|_| {
                Ec2Error::invalid_parameter(format!(
                    "Value ({text}) for parameter {name} is invalid."
                ))
                .into()
            })
        })
        .transpose()
}

fn page(params: &Params) -> Result<Page, QueryError> {
    Ok(Page {
        max_results: number(params, "MaxResults")?.map(|max| max as usize),
        next_token: params.get("NextToken").map(str::to_owned),
    })
}

/// `Filter.N.Name` with `Filter.N.Value.M`.
fn filters(params: &Params) -> Vec<Filter> {
    (1..)
        .map_while(|n| {
            params.get(&format!("Filter.{n}.Name")).map(|name| Filter {
                name: name.to_owned(),
                values: params.list(&format!("Filter.{n}.Value")),
            })
        })
        .collect()
}

/// The tags of every `TagSpecification.N` whose `ResourceType` is `resource`.
fn tags_for(params: &Params, resource: &str) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    for n in 1.. {
        let Some(kind) = params.get(&format!("TagSpecification.{n}.ResourceType")) else {
            break;
        };
        if kind != resource {
            continue;
        }
        for m in 1.. {
            let Some(key) = params.get(&format!("TagSpecification.{n}.Tag.{m}.Key")) else {
                break;
            };
            let value = params
                .get(&format!("TagSpecification.{n}.Tag.{m}.Value"))
                .unwrap_or("");
            tags.push((key.to_owned(), value.to_owned()));
        }
    }
    tags
}
