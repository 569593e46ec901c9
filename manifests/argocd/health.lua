-- Argo CD health check for serving.isvc.dev/InferenceService.
-- The operator's Ready condition aggregates the others (PredictorReady, ServiceReady, ...):
--   no status yet, status of an older generation, or Ready=Unknown -> Progressing
--   Ready=True -> Healthy;  Ready=False -> Degraded ("Reason: message")
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

local ready = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
if ready == nil then
  hs.message = "Waiting for the Ready condition"
  return hs
end
-- A Ready condition left over from an older spec says nothing about the current one.
if ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.message = "Waiting for the Ready condition of generation " .. tostring(generation)
  return hs
end

local reason = ready.reason or ""
local message = ready.message or ""
local summary = message
if reason ~= "" and message ~= "" then
  summary = reason .. ": " .. message
elseif reason ~= "" then
  summary = reason
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = summary
else
  hs.status = "Progressing"
  hs.message = summary
end
return hs
