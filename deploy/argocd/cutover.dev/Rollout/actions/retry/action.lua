-- `cutover retry`: start the aborted update again.
if obj.status ~= nil then
  obj.status.abort = nil
end
return obj
