//! `[accounts]`: how prospects are grouped into accounts for company
//! scores where the CRM has no account object of its own (Account
//! Engagement). HubSpot groups contacts by their primary associated
//! company and takes no `[accounts]`.

use serde::Deserialize;
use toml::Spanned;

use super::CrmKind;
use crate::model::Model;
use crate::model::diagnostics::Diagnostics;

/// `[accounts]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccounts {
    pub group_by: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One way to tell which account a prospect belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKey {
    /// The Salesforce account the prospect's contact belongs to
    /// (`salesforceAccountId`, read-only, set by the Salesforce sync).
    SalesforceAccount,
    /// The domain of the prospect's `website`.
    Website,
    /// The domain of the prospect's email, unless it is a personal mail
    /// service's.
    EmailDomain,
    /// The prospect's `company`, compared without case, punctuation or a
    /// legal form (`Acme AS`, `ACME, Inc.` and `acme` are one account).
    Company,
}

impl AccountKey {
    const ALL: [(&'static str, AccountKey); 4] = [
        ("salesforce_account", AccountKey::SalesforceAccount),
        ("website", AccountKey::Website),
        ("email_domain", AccountKey::EmailDomain),
        ("company", AccountKey::Company),
    ];

    /// The prospect field the key is read from.
    pub fn field(self) -> &'static str {
        match self {
            AccountKey::SalesforceAccount => "salesforceAccountId",
            AccountKey::Website => "website",
            AccountKey::EmailDomain => "email",
            AccountKey::Company => "company",
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("", |(name, _)| name)
    }
}

/// Validated `[accounts]`: the keys in order; a prospect belongs to the
/// account its first present key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accounts {
    pub group_by: Vec<AccountKey>,
}

impl Default for Accounts {
    /// The Salesforce account where the prospect's contact has one, else
    /// the website's domain, else the company name.
    fn default() -> Self {
        Accounts {
            group_by: vec![
                AccountKey::SalesforceAccount,
                AccountKey::Website,
                AccountKey::Company,
            ],
        }
    }
}

impl Accounts {
    /// The prospect fields a pull reads to group prospects.
    pub fn fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.group_by.iter().map(|k| k.field())
    }
}

/// Checks `[accounts]` against the CRM and the model: `None` when nothing
/// is grouped (HubSpot, or a model without company scores).
pub(crate) fn accounts(
    d: &mut Diagnostics<'_>,
    raw: Option<(std::ops::Range<usize>, RawAccounts)>,
    kind: CrmKind,
    model: &Model,
) -> Option<Accounts> {
    let grouped = kind == CrmKind::Pardot && model.has_company_scores();
    let Some((span, raw)) = raw else {
        return grouped.then(Accounts::default);
    };
    if kind == CrmKind::Hubspot {
        d.error(
            &span,
            "[accounts]: HubSpot groups contacts by their primary associated company (associatedcompanyid); [accounts] is for Account Engagement (Pardot), which has no account object",
        );
        return None;
    }
    if !model.has_company_scores() {
        d.error(
            &span,
            "[accounts]: the model has no company score (`[[score]] object = \"company\"`), so prospects are not grouped",
        );
        return None;
    }
    let Some(list) = raw.group_by else {
        return Some(Accounts::default());
    };
    let list_span = list.span();
    let mut group_by = Vec::new();
    for key in list.into_inner() {
        let names: Vec<&str> = AccountKey::ALL.iter().map(|(n, _)| *n).collect();
        match AccountKey::ALL.iter().find(|(n, _)| n == key.get_ref()) {
            Some((_, k)) if group_by.contains(k) => d.error(
                &key.span(),
                format!("[accounts] group_by: `{}` is named twice", key.get_ref()),
            ),
            Some((_, k)) => group_by.push(*k),
            None => d.error(
                &key.span(),
                format!(
                    "[accounts] group_by: {}",
                    crate::model::diagnostics::unknown_key(key.get_ref(), &names)
                ),
            ),
        }
    }
    if group_by.is_empty() {
        d.error(
            &list_span,
            "[accounts] group_by is empty: name at least one of salesforce_account, website, email_domain, company",
        );
        return None;
    }
    Some(Accounts { group_by })
}
