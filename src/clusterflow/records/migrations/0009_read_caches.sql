-- Notifications that let API processes cache reads (api/read_caches.py).
--
-- Operations: append_operation_event notifies for every event it writes. An update that writes
-- no event (the operation's event_count unchanged) notifies too, with the same payload shape, so
-- no change to a record can go unannounced. Events and their updates are announced only once.
CREATE FUNCTION notify_operation_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cf_operation_events', OLD.id || ':' || OLD.event_count);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('cf_operation_events', NEW.id || ':' || NEW.event_count);
    RETURN NEW;
END;
$$;

CREATE TRIGGER operations_changed_without_event
    AFTER UPDATE ON operations FOR EACH ROW
    WHEN (OLD.event_count = NEW.event_count)
    EXECUTE FUNCTION notify_operation_changed();

CREATE TRIGGER operations_deleted
    AFTER DELETE ON operations FOR EACH ROW
    EXECUTE FUNCTION notify_operation_changed();

-- API keys: a change to whether or how a key authenticates (revocation, expiry, role, deletion)
-- is announced with the key's ID; last_used_at bookkeeping is not.
CREATE FUNCTION notify_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cf_api_keys', COALESCE(NEW.id, OLD.id));
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE OF revoked_at, expires_at, role, key_hash, key_prefix, organization_id OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_api_key_changed();
