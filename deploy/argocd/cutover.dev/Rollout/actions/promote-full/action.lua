-- `cutover promote --full`: release the pauses and skip the remaining analysis and pauses.
if obj.status == nil then
  obj.status = {}
end
obj.status.pauseConditions = nil
obj.status.promoteFull = true
if obj.spec.paused == true then
  obj.spec.paused = nil
end
return obj
