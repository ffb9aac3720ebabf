//! sea-orm entities, one module per table (see `migrations`). Times are Unix milliseconds.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod flows {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub title: Option<String>,
        pub enabled: bool,
        pub version: i64,
        #[sea_orm(column_type = "Text")]
        pub definition: String,
        pub created_at: i64,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod flow_versions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flow_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub flow: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        #[sea_orm(column_type = "Text")]
        pub definition: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub flow: String,
        pub method: String,
        pub path: String,
        #[sea_orm(column_type = "Text")]
        pub headers: String,
        #[sea_orm(column_type = "Text")]
        pub query: String,
        pub body: Vec<u8>,
        pub received_at: i64,
        pub dedupe_key: Option<String>,
    }
    no_relations!();
}

pub mod runs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub flow: String,
        pub version: i64,
        pub event_id: Option<String>,
        pub status: String,
        pub attempt: i32,
        #[sea_orm(column_type = "Text")]
        pub trigger: String,
        pub parent_run: Option<String>,
        pub parent_step: Option<String>,
        pub depth: i32,
        pub idempotency_key: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub output: Option<String>,
        pub worker: Option<String>,
        pub lease_until: Option<i64>,
        pub available_at: i64,
        pub created_at: i64,
        pub started_at: Option<i64>,
        pub finished_at: Option<i64>,
    }
    no_relations!();
}

pub mod step_runs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "step_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub run_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub step_id: String,
        pub status: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub input: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub output: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
        pub attempts: i32,
        pub started_at: i64,
        pub duration_ms: i64,
    }
    no_relations!();
}

pub mod deliveries {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub run_id: String,
        pub step_id: String,
        #[sea_orm(column_type = "Text")]
        pub url: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub secret: Option<String>,
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: i64,
        pub lease_until: Option<i64>,
        pub last_status: Option<i32>,
        #[sea_orm(column_type = "Text", nullable)]
        pub last_error: Option<String>,
        pub idempotency_key: String,
        pub created_at: i64,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod delivery_attempts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub delivery_id: String,
        pub attempt: i32,
        pub response_status: Option<i32>,
        #[sea_orm(column_type = "Text", nullable)]
        pub response_body: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
        pub duration_ms: i64,
        pub at: i64,
    }
    no_relations!();
}

pub mod secrets {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "secrets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub nonce: Vec<u8>,
        pub ciphertext: Vec<u8>,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod api_tokens {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub token_hash: String,
        pub created_at: i64,
        pub last_used_at: Option<i64>,
    }
    no_relations!();
}

pub mod inbox_requests {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub inbox: String,
        pub method: String,
        #[sea_orm(column_type = "Text")]
        pub path: String,
        #[sea_orm(column_type = "Text")]
        pub query: String,
        #[sea_orm(column_type = "Text")]
        pub headers: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub received_at: i64,
    }
    no_relations!();
}

pub mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub username: String,
        pub password_hash: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        pub username: String,
        pub csrf: String,
        pub created_at: i64,
        pub expires_at: i64,
    }
    no_relations!();
}
