-- Which cutover actions Argo CD offers for a Rollout: the ones `cutover` itself would act on
-- (it refuses a promote with nothing paused, an abort with no update in flight, a retry of a
-- rollout that is not aborted).
local actions = {}
local status = obj.status or {}
local paused = (obj.spec.paused == true) or (status.pauseConditions ~= nil and #status.pauseConditions > 0)
local aborted = status.abort == true
local updating = status.currentPodHash ~= status.stableRS
actions["promote"] = { ["disabled"] = not paused }
actions["promote-full"] = { ["disabled"] = not (paused or updating) }
actions["abort"] = { ["disabled"] = aborted or not updating }
actions["retry"] = { ["disabled"] = not aborted }
actions["restart"] = { ["disabled"] = false }
return actions
