-- Argo CD health check for serving.isvc.dev/InferenceService.
-- The operator writes Ready (the aggregate of PredictorReady, ServiceReady, ...) and, beside it,
-- Reconciling and Stalled (the kstatus conventions Flux reads); this check reads them the same way:
--   no status yet, status of an older generation, or no Ready condition -> Progressing
--   Stalled=True -> Degraded;  Reconciling=True -> Progressing  ("Reason: message")
--   Ready=True -> Healthy;  Ready=False -> Degraded;  Ready=Unknown -> Progressing
-- (Ready=False without Stalled comes from operators older than these conditions.)
-- A canary that asks for traffic keeps Ready=True (the stable revision serves) and sets
-- Reconciling=True, reason CanaryInProgress: Progressing until it is promoted, rolled back or removed.
local hs = {}
hs.status = "Progressing"
hs.message = "Waiting for the isvc-operator to report status"

if obj.status == nil then
  return hs
end

local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration
if observed == nil or observed < generation then
  hs.message = "Waiting for the isvc-operator to observe generation " .. tostring(generation)
  return hs
end

-- A condition left over from an older spec says nothing about the current one.
local function current(condition)
  return condition.observedGeneration == nil or condition.observedGeneration >= generation
end

local ready, reconciling, stalled = nil, nil, nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    elseif condition.type == "Reconciling" and current(condition) then
      reconciling = condition
    elseif condition.type == "Stalled" and current(condition) then
      stalled = condition
    end
  end
end
if ready == nil then
  hs.message = "Waiting for the Ready condition"
  return hs
end
if not current(ready) then
  hs.message = "Waiting for the Ready condition of generation " .. tostring(generation)
  return hs
end

local function summary(condition)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  elseif reason ~= "" then
    return reason
  end
  return message
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = summary(stalled)
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = summary(reconciling)
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = summary(ready)
else
  hs.status = "Progressing"
  hs.message = summary(ready)
end
return hs
