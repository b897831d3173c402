//! Tags: TagResource, UntagResource, ListResourceTags, and tag validation for CreateKey.

use std::collections::BTreeMap;

use crate::api::{
    ListResourceTagsResponse, PageRequest, Tag, TagResourceRequest, UntagResourceRequest,
};
use crate::resolve::{Aliases, page_limit};
use atrest_policy::Context;

use crate::{Kms, KmsError, RequestContext};

const MAX_TAGS: usize = 50;

impl Kms {
    pub fn tag_resource(
        &self,
        ctx: &RequestContext,
        request: TagResourceRequest,
    ) -> Result<(), KmsError> {
        self.update_authorized(ctx, &request.key_id, "kms:TagResource", &mut |record| {
            self.require_not_pending_deletion(record)?;
            record.tags = validated_tags(request.tags.clone(), &record.tags)?;
            Ok(())
        })?;
        Ok(())
    }

    pub fn untag_resource(
        &self,
        ctx: &RequestContext,
        request: UntagResourceRequest,
    ) -> Result<(), KmsError> {
        self.update_authorized(ctx, &request.key_id, "kms:UntagResource", &mut |record| {
            self.require_not_pending_deletion(record)?;
            for key in &request.tag_keys {
                record.tags.remove(key);
            }
            Ok(())
        })?;
        Ok(())
    }

    pub fn list_resource_tags(
        &self,
        ctx: &RequestContext,
        request: PageRequest,
    ) -> Result<ListResourceTagsResponse, KmsError> {
        let limit = page_limit(request.limit, 50, 50)?;
        let key_ref = request
            .key_id
            .as_deref()
            .ok_or_else(|| KmsError::validation("keyId", "null", "Member must not be null"))?;
        let action = "kms:ListResourceTags";
        let record =
            self.resolve_authorized(ctx, key_ref, Aliases::Refused, action, &Context::new)?;
        let mut tags: Vec<Tag> = record
            .tags
            .clone()
            .into_iter()
            .filter(|(key, _)| request.marker.as_ref().is_none_or(|marker| key > marker))
            .map(|(tag_key, tag_value)| Tag { tag_key, tag_value })
            .collect();
        let truncated = tags.len() > limit;
        tags.truncate(limit);
        let next_marker = truncated
            .then(|| tags.last().map(|tag| tag.tag_key.clone()))
            .flatten();
        Ok(ListResourceTagsResponse {
            tags,
            truncated,
            next_marker,
        })
    }
}

/// Merges `new` over `existing` with AWS's limits: keys 1–128 and values 0–256 characters,
/// no `aws:` prefix, at most 50 tags per key.
pub(crate) fn validated_tags(
    new: Vec<Tag>,
    existing: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, KmsError> {
    let mut merged = existing.clone();
    for tag in new {
        let key_len = tag.tag_key.chars().count();
        if key_len == 0 || key_len > 128 {
            return Err(KmsError::Tag(format!(
                "Tag key length must be between 1 and 128: {}",
                tag.tag_key
            )));
        }
        if tag.tag_value.chars().count() > 256 {
            return Err(KmsError::Tag(format!(
                "Tag value of {} must be at most 256 characters",
                tag.tag_key
            )));
        }
        if tag.tag_key.starts_with("aws:") {
            return Err(KmsError::Tag(
                "Tag keys beginning with aws: are reserved".into(),
            ));
        }
        merged.insert(tag.tag_key, tag.tag_value);
    }
    if merged.len() > MAX_TAGS {
        return Err(KmsError::Tag(format!(
            "A KMS key can have at most {MAX_TAGS} tags"
        )));
    }
    Ok(merged)
}
