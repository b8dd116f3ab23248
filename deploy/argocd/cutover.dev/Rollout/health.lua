-- Argo CD health of a cutover.dev Rollout, read from the status cutover's controller writes
-- (status.phase and status.message, which cutover's planner keeps in step with its conditions).
-- Argo CD runs this with gopher-lua (Lua 5.1) and the Rollout as the global `obj`.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the cutover controller to report status"
  return hs
end
-- A status written for an older spec says nothing about the present one.
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the cutover controller to observe generation " .. generation
  return hs
end
local message = status.message
if message == nil then
  message = ""
end
if status.phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
-- Paused for promotion, or paused by hand: waiting for a person, as Argo CD's Suspended means.
if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Paused: " .. message
  return hs
end
if status.phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = message
  return hs
end
if status.phase == "Healthy" then
  local replicas = 1
  if obj.spec.replicas ~= nil then
    replicas = obj.spec.replicas
  end
  local available = status.availableReplicas or 0
  if available < replicas then
    hs.status = "Progressing"
    hs.message = "Waiting for pods: " .. available .. " of " .. replicas .. " active pods available"
    return hs
  end
  hs.status = "Healthy"
  hs.message = "The active Service serves the current revision"
  return hs
end
hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(status.phase)
return hs
