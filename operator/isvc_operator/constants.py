"""Names the API, the children and the operator share; one place so they never drift apart."""

GROUP = "serving.isvc.dev"
VERSION = "v1alpha1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
API_VERSION = f"{GROUP}/{VERSION}"

FIELD_MANAGER = "isvc-operator"
OPERATOR_NAME = "isvc-operator"

# Every child carries these; the last one names its InferenceService.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_ISVC = f"{GROUP}/inferenceservice"

# Which revision of the predictor a Deployment (and its pods) runs, and whether it is the stable
# revision or the canary: recorded on the objects, so an operator restart finds them again.
LABEL_REVISION = f"{GROUP}/revision"
LABEL_ROLE = f"{GROUP}/role"

# Hash of the desired object, so an unchanged child is never written again.
ANNOTATION_SPEC_HASH = f"{GROUP}/desired-hash"

COMPONENT_PREDICTOR = "predictor"

# Where the model lands inside the model-server container (KServe uses the same path).
MODEL_MOUNT_PATH = "/mnt/models"
MODEL_VOLUME = "model"
MODEL_CONFIG_FILE = "/etc/tfserving/models.config"

# The longest InferenceService name whose derived names (e.g. NAME-predictor, NAME-model-config)
# and label values all stay within Kubernetes' 63-character limits. Mirrored in the CRD's CEL rule.
MAX_NAME_LENGTH = 45

# Annotation/label prefixes that belong to tools, never copied from the isvc onto children.
BOOKKEEPING_PREFIXES = (
    "kopf.zalando.org/",
    "kubectl.kubernetes.io/",
    "meta.helm.sh/",
    "argocd.argoproj.io/",
    "kustomize.toolkit.fluxcd.io/",
    "fluxcd.io/",
)
