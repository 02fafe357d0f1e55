//! The states a catalog row can be in, spelt as the catalog stores them (the CHECK
//! constraints of the migrations list the same words).

use crate::words::{flag_word, stored_as_word, word_enum};

word_enum! {
    /// Where a customer stands; `customer list --status` filters on it.
    pub enum CustomerStatus ("customer status") {
        /// Its database is not in place yet; no command lists, resolves or works on it.
        Provisioning = "provisioning",
        Active = "active",
        Suspended = "suspended",
        Deleted = "deleted",
        /// Shown, never stored: a move has frozen its database and copies it.
        Moving = "moving",
    }
}
stored_as_word!(CustomerStatus);
flag_word!(CustomerStatus: Active, Suspended, Deleted);

word_enum! {
    /// Where a site stands; `site list --status` filters on it and `site update
    /// --status` sets it.
    pub enum SiteStatus ("site status") {
        Draft = "draft",
        Deployed = "deployed",
        Stopped = "stopped",
        Failed = "failed",
    }
}
stored_as_word!(SiteStatus);
flag_word!(SiteStatus);

word_enum! {
    /// How a tenant database's last migration went.
    pub enum TenantMigrationStatus ("tenant migration status") {
        Ok = "ok",
        Failed = "failed",
        Drift = "drift",
    }
}
stored_as_word!(TenantMigrationStatus);

word_enum! {
    /// Which way a tenant database's last migration run went.
    pub enum MigrationAction ("migration action") {
        Migrate = "migrate",
        Rollback = "rollback",
    }
}
stored_as_word!(MigrationAction);

word_enum! {
    /// Why a site config snapshot was taken.
    pub enum SnapshotKind ("snapshot kind") {
        Manual = "manual",
        PreDeploy = "pre-deploy",
        PreRestore = "pre-restore",
        Import = "import",
    }
}
stored_as_word!(SnapshotKind);

word_enum! {
    /// Whether an API key can be used; worked out from its dates, not stored.
    pub enum KeyStatus ("key status") {
        Active = "active",
        Revoked = "revoked",
        Expired = "expired",
    }
}
stored_as_word!(KeyStatus);

word_enum! {
    /// Whether a portal session can be used; `blocked` when its customer is not active.
    pub enum SessionStatus ("session status") {
        Active = "active",
        Revoked = "revoked",
        Expired = "expired",
        Blocked = "blocked",
    }
}
stored_as_word!(SessionStatus);

word_enum! {
    /// Where a catalog migration stands against the migrations built in.
    pub enum CatalogMigrationStatus ("catalog migration status") {
        Applied = "applied",
        Pending = "pending",
        Drift = "drift",
        Unknown = "unknown",
    }
}

word_enum! {
    /// How a `db sql` run in the query history went.
    pub enum QueryStatus ("query status") {
        Ok = "ok",
        Error = "error",
        /// Recorded before it started and never finished (killed).
        Running = "running",
    }
}
stored_as_word!(QueryStatus);

impl QueryStatus {
    pub fn of_finished(error: Option<&str>) -> Self {
        if error.is_some() {
            QueryStatus::Error
        } else {
            QueryStatus::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::{NewCustomer, NewSite};
    use crate::catalog::{customers, in_memory, sites};
    use crate::engine::Placement;

    /// Each word passes the catalog's CHECK constraint and reads back as itself.
    #[test]
    fn every_status_is_one_the_catalog_stores() {
        let catalog = in_memory();
        let conn = catalog.conn();
        let customer = customers::insert(
            conn,
            &NewCustomer {
                id: None,
                slug: "acme".into(),
                email: "acme@example.com".into(),
                name: "Acme".into(),
                company_name: None,
                plan: "starter".into(),
                metadata: serde_json::Map::new(),
                placement: Placement::local(std::path::Path::new("/x/acme.db")).unwrap(),
                schema_version: 1,
            },
        )
        .unwrap();
        // `moving` is only ever shown, worked out from the operation ledger.
        for status in CustomerStatus::ALL
            .iter()
            .filter(|s| **s != CustomerStatus::Moving)
        {
            customers::set_status(conn, customer.id, *status, None).unwrap();
            let stored = customers::any_by_id(conn, customer.id).unwrap().unwrap();
            assert_eq!(stored.status, *status);
        }
        for (n, status) in SiteStatus::ALL.iter().enumerate() {
            let site = sites::insert(
                conn,
                &NewSite {
                    customer_id: customer.id,
                    name: "Shop".into(),
                    domain: format!("s{n}.acme.test"),
                    port: None,
                    business_type: None,
                    status: *status,
                    config: serde_json::json!({}),
                },
            )
            .unwrap();
            assert_eq!(site.status, *status);
        }
    }
}

word_enum! {
    /// Whether a database server takes new tenants (`server update --status`).
    pub enum ServerStatus ("server status") {
        Active = "active",
        /// Keeps hosting its tenants but gets no new ones.
        Draining = "draining",
    }
}
stored_as_word!(ServerStatus);
flag_word!(ServerStatus);

word_enum! {
    /// How a server holds its tenants (`server add --mode`).
    pub enum ServerMode ("server mode") {
        /// One database per tenant.
        Database = "database",
        /// One schema per tenant inside the URL's database (PostgreSQL only).
        Schema = "schema",
    }
}
stored_as_word!(ServerMode);
flag_word!(ServerMode);
