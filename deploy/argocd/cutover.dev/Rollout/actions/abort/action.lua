-- `cutover abort`: the active Service returns to the stable revision.
if obj.status == nil then
  obj.status = {}
end
obj.status.abort = true
return obj
