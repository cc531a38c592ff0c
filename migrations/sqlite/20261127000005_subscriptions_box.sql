-- Counting a box's live subscriptions (limits.max_subscriptions_per_box) at each creation.
CREATE INDEX subscriptions_box ON subscriptions(box_id, expires_at_ms);
