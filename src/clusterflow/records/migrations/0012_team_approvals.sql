-- Approvals for a team (issue 17): the rules an operation waits under are fixed at enqueue and
-- kept on the operation, and every decision is kept with who, when and comment.
--   approval_required_count: distinct approvals needed (1 unless the policy asks for more)
--   approval_require_different_approver: four eyes, the requester cannot decide
--   approval_rule: the policy rule that asked for the approval ({"name", "labelSelector"?})
--   approval_received: [{"by", "at", "decision", "comment"}] in the order decided
ALTER TABLE operations
    ADD COLUMN approval_required_count int,
    ADD COLUMN approval_require_different_approver boolean NOT NULL DEFAULT false,
    ADD COLUMN approval_rule jsonb,
    ADD COLUMN approval_received jsonb NOT NULL DEFAULT '[]'::jsonb;

UPDATE operations SET approval_required_count = 1 WHERE approval_required_role IS NOT NULL;
