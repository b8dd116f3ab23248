-- `cutover promote`: release the pauses (status) and a manual pause (spec).
if obj.status ~= nil then
  obj.status.pauseConditions = nil
end
if obj.spec.paused == true then
  obj.spec.paused = nil
end
return obj
