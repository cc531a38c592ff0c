-- Wakeups between nodes: the database announces what an open long poll or a webhook
-- deliverer on any node must look at, with NOTIFY, which is transactional (delivered on
-- commit, dropped on rollback). Every server LISTENs (src/store/postgres.rs) and wakes its
-- waiters; writers outside the server (`cpm-nms box reset`) wake servers the same way.
--
-- * `nms_box`, payload 'box:modseq': a box changed (its modseq, bumped first by every write,
--   rose).
-- * `nms_channel`, payload the channel's id: its open poll must read the channel again (a
--   newer poll began, the channel was deleted, a subscription into it was made or set to
--   another restart point).

CREATE FUNCTION nms_notify_box() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nms_box', NEW.id || ':' || NEW.modseq);
    RETURN NULL;
END $$;

CREATE TRIGGER boxes_notify AFTER UPDATE OF modseq ON boxes
    FOR EACH ROW WHEN (NEW.modseq <> OLD.modseq) EXECUTE FUNCTION nms_notify_box();

CREATE FUNCTION nms_notify_channel() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'channels' THEN
        PERFORM pg_notify('nms_channel', OLD.id::text);
    ELSE
        PERFORM pg_notify('nms_channel', NEW.channel_id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER channels_notify_poll AFTER UPDATE OF poll_generation ON channels
    FOR EACH ROW WHEN (NEW.poll_generation <> OLD.poll_generation) EXECUTE FUNCTION nms_notify_channel();
CREATE TRIGGER channels_notify_delete AFTER DELETE ON channels
    FOR EACH ROW EXECUTE FUNCTION nms_notify_channel();
CREATE TRIGGER subscriptions_notify_new AFTER INSERT ON subscriptions
    FOR EACH ROW WHEN (NEW.channel_id IS NOT NULL) EXECUTE FUNCTION nms_notify_channel();
-- Set to another restart point without a list taken (an update; a poll skipping changes its
-- filter drops does the same, a wakeup too many).
CREATE TRIGGER subscriptions_notify_restart AFTER UPDATE OF restart_token ON subscriptions
    FOR EACH ROW WHEN (NEW.channel_id IS NOT NULL AND NEW.next_index = OLD.next_index)
    EXECUTE FUNCTION nms_notify_channel();
