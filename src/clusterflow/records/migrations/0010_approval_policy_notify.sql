-- API processes cache organizations' approval policies like keys (api/read_caches.py): a change
-- is announced at commit with the organization's ID.
CREATE FUNCTION notify_approval_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cf_approval_policies', NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER organizations_approval_policy_changed
    AFTER UPDATE OF approval_policy ON organizations
    FOR EACH ROW EXECUTE FUNCTION notify_approval_policy_changed();
