//! One schema for both backends, in portable types: ids are text UUIDs, times are UTC
//! `TIMESTAMP`s, JSON is text. The DDL lives in `migrations/{postgres,sqlite}`, kept in step by
//! the `migrations_match` test.

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        disabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        retention_days -> Nullable<Integer>,
        quota_pages_per_month -> Nullable<BigInt>,
        quota_stored_bytes -> Nullable<BigInt>,
        quota_concurrent_tasks -> Nullable<BigInt>,
        quota_max_upload_bytes -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        prefix -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        scopes -> Text,
    }
}

diesel::table! {
    files (id) {
        id -> Text,
        user_id -> Text,
        blob_key -> Text,
        filename -> Text,
        content_type -> Text,
        size_bytes -> BigInt,
        sha256 -> Text,
        page_count -> Nullable<Integer>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    invites (id) {
        id -> Text,
        token_hash -> Text,
        email -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        used_by -> Nullable<Text>,
    }
}

diesel::table! {
    task_events (id) {
        id -> BigInt,
        task_id -> Text,
        at -> Timestamp,
        kind -> Text,
        message -> Text,
        worker -> Nullable<Text>,
        attempt -> Nullable<Integer>,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Text,
        user_id -> Text,
        file_id -> Text,
        status -> Text,
        engine -> Text,
        options -> Text,
        priority -> Integer,
        attempts -> Integer,
        max_attempts -> Integer,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        pages_done -> Integer,
        pages_total -> Nullable<Integer>,
        error_code -> Nullable<Text>,
        error_message -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        warnings -> Nullable<Text>,
        retention_days -> Nullable<Integer>,
        pages_reserved -> Integer,
        callback_url -> Nullable<Text>,
        callback_secret -> Nullable<Text>,
        webhook_pending -> Bool,
    }
}

diesel::table! {
    results (id) {
        id -> Text,
        task_id -> Text,
        user_id -> Text,
        blob_keys -> Text,
        page_count -> Integer,
        mean_confidence -> Nullable<Double>,
        text -> Text,
        created_at -> Timestamp,
        text_layer_pages -> Integer,
    }
}

diesel::table! {
    password_resets (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    backups (id) {
        id -> Text,
        created_at -> Timestamp,
        archive -> Text,
        bytes -> BigInt,
        blobs -> BigInt,
        schema_version -> Text,
    }
}

diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(password_resets -> users (user_id));
diesel::joinable!(files -> users (user_id));
diesel::joinable!(tasks -> files (file_id));
diesel::table! {
    audit_log (seq) {
        seq -> BigInt,
        at -> Timestamp,
        actor_id -> Nullable<Text>,
        actor -> Text,
        client -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        action -> Text,
        target -> Nullable<Text>,
        outcome -> Text,
        detail -> Nullable<Text>,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    workers (id) {
        id -> Text,
        host -> Text,
        pid -> Integer,
        version -> Text,
        engine -> Text,
        devices -> Text,
        concurrency -> Integer,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
        state -> Text,
        drain -> Bool,
        pages_done -> BigInt,
        pages_per_sec -> Double,
        rss_bytes -> BigInt,
        role -> Text,
    }
}

diesel::table! {
    job_leases (name) {
        name -> Text,
        holder -> Text,
        until -> Timestamp,
    }
}

diesel::table! {
    audit_head (id) {
        id -> BigInt,
        seq -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    stats_units (level, start_at) {
        level -> Text,
        start_at -> Timestamp,
    }
}

diesel::table! {
    stats_hours (hour, event, engine, error_code) {
        hour -> Timestamp,
        event -> Text,
        engine -> Text,
        error_code -> Text,
        n -> BigInt,
        pages -> BigInt,
        timed -> BigInt,
        page_seconds -> Double,
    }
}

diesel::table! {
    stats_durations (day, kind, bucket) {
        day -> Timestamp,
        kind -> Text,
        bucket -> Integer,
        n -> BigInt,
    }
}

diesel::table! {
    stats_users (day, user_id) {
        day -> Timestamp,
        user_id -> Text,
        tasks -> BigInt,
        pages -> BigInt,
    }
}

diesel::table! {
    search_pages (id) {
        id -> BigInt,
        task_id -> Text,
        owner -> Text,
        page -> Integer,
        body -> Text,
    }
}

diesel::table! {
    quota_pages (user_id, month) {
        user_id -> Text,
        month -> Text,
        pages -> BigInt,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        user_id -> Text,
        url -> Text,
        events -> Text,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_secret_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
        failing_since -> Nullable<Timestamp>,
        disabled_at -> Nullable<Timestamp>,
        disabled_reason -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        endpoint_id -> Nullable<Text>,
        task_id -> Nullable<Text>,
        user_id -> Text,
        url -> Text,
        event -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Nullable<Timestamp>,
        locked_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> BigInt,
        delivery_id -> Text,
        at -> Timestamp,
        status_code -> Nullable<Integer>,
        latency_ms -> Integer,
        error -> Nullable<Text>,
        response -> Nullable<Text>,
        next_attempt_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(results -> tasks (task_id));
diesel::joinable!(search_pages -> tasks (task_id));
diesel::joinable!(task_events -> tasks (task_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_log,
    backups,
    invites,
    users,
    api_tokens,
    password_resets,
    files,
    tasks,
    task_events,
    results,
    search_pages,
    settings,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    workers
);
