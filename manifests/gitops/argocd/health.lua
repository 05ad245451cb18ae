-- Argo CD health check for Atrium's kinds (Microservice, ServiceConfig, GatewayRoute). They all
-- report kstatus conditions: Ready, Reconciling, Stalled and observedGeneration.
local hs = {status = "Progressing", message = "Waiting for the Atrium controller"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "The controller has not observed the latest spec yet"
  return hs
end
local ready, stalled, reconciling
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c
  elseif c.type == "Stalled" then stalled = c
  elseif c.type == "Reconciling" then reconciling = c end
end
local function text(c) return c.message ~= nil and c.message ~= "" and c.message or (c.reason or "") end
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = text(stalled)}
end
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = text(ready)}
end
if reconciling ~= nil and reconciling.status == "True" then
  return {status = "Progressing", message = text(reconciling)}
end
if ready ~= nil then
  hs.message = text(ready)
end
return hs
