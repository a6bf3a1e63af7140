-- An event's progress never falls below the highest the operation has reported (issue 20): a
-- phase re-run after its worker was lost, or a retry starting again at the phase's first
-- percentage, no longer shows progress moving backwards in the event log. The operation's own
-- progress was already kept at its highest; each event now records that same value.
CREATE OR REPLACE FUNCTION append_operation_event(
    p_operation_id text, p_event_key text, p_kind text, p_level text, p_phase text,
    p_progress integer, p_message text, p_raw_output text, p_labels jsonb
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_sequence bigint;
    v_progress integer;
BEGIN
    PERFORM 1 FROM operations WHERE id = p_operation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown operation %', p_operation_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT sequence INTO v_sequence FROM operation_events
     WHERE operation_id = p_operation_id AND event_key = p_event_key;
    IF FOUND THEN
        RETURN v_sequence;
    END IF;
    UPDATE operations
       SET event_count = event_count + 1,
           current_phase = COALESCE(p_phase, current_phase),
           progress_percentage = GREATEST(progress_percentage, COALESCE(p_progress, 0)),
           message = p_message,
           last_update = now()
     WHERE id = p_operation_id
     RETURNING event_count, progress_percentage INTO v_sequence, v_progress;
    INSERT INTO operation_events (operation_id, sequence, event_key, kind, level, phase,
                                  progress_percentage, message, raw_output, labels)
    VALUES (p_operation_id, v_sequence, p_event_key, p_kind, p_level, p_phase,
            CASE WHEN p_progress IS NULL THEN NULL ELSE v_progress END,
            p_message, p_raw_output, COALESCE(p_labels, '{}'::jsonb));
    PERFORM pg_notify('cf_operation_events', p_operation_id || ':' || v_sequence);
    RETURN v_sequence;
END;
$$;
