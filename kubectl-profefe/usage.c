/* kubectl-profefe/usage.c: the -h text of every command. */
#include "kubectl-profefe/kp.h"

static const char kube_flags[] =
        "\nKubernetes flags (as kubectl's):\n"
        "      --kubeconfig FILE         the kubeconfig to use (default: $KUBECONFIG, then "
        "~/.kube/config)\n"
        "      --context NAME            the kubeconfig context to use\n"
        "  -n, --namespace NAME          the namespace (default: the context's namespace)\n"
        "  -A, --all-namespaces          every namespace\n"
        "      --request-timeout D       give up on one API server or profefe request after "
        "D (e.g. 30s; 0: the default)\n";

static const char profefe_flag[] =
        "      --profefe-url URL         profefe's address (default: $PROFEFE_URL, else "
        "http://localhost:10100)\n";

static const char overview[] =
        "kubectl profefe: capture Go pprof profiles from pods and query profefe.\n"
        "\n"
        "Usage:\n"
        "  kubectl profefe capture [POD...] [-l SELECTOR] [flags]   capture profiles now\n"
        "  kubectl profefe get profiles --service S [flags]         list stored profiles\n"
        "  kubectl profefe get services [flags]                     list profefe's services\n"
        "  kubectl profefe load FILE... --service S [flags]         upload local profiles\n"
        "  kubectl profefe pprof ID... [-o FILE]                    download (merged) "
        "profiles\n"
        "  kubectl profefe merge --service S --type T [flags]       download a merged "
        "range\n"
        "  kubectl profefe version                                  print the version\n"
        "\n"
        "Run \"kubectl profefe COMMAND -h\" for a command's flags.\n";

static const char capture_help[] =
        "Capture pprof profiles from pods, now.\n"
        "\n"
        "Pods are chosen by name, or by -l selector in the namespace (or -A). Only Running\n"
        "pods annotated profefe.com/enable=true are captured, unless --ignore-annotation.\n"
        "The profefe.com/port, /path, /scheme and /service annotations are honoured.\n"
        "Profiles go to --output-dir as NAMESPACE/POD/TYPE-TIME.pb.gz, or to profefe\n"
        "with --profefe-url. Pods are captured in parallel, one CPU profile per pod at a\n"
        "time. One line is printed per profile; the exit status is 1 if any failed.\n"
        "\n"
        "Usage:\n"
        "  kubectl profefe capture [POD...] [flags]\n"
        "\n"
        "Examples:\n"
        "  kubectl profefe capture web-7d4b9-x2k1 --type heap\n"
        "  kubectl profefe capture -l app=web --seconds 30 --profefe-url "
        "http://localhost:10100\n"
        "\n"
        "Flags:\n"
        "  -l, --selector SELECTOR       label selector of the pods (e.g. app=web,tier!=db)\n"
        "      --type TYPE               cpu, heap, allocs, goroutine, mutex, block, "
        "threadcreate;\n"
        "                                repeatable or comma-separated (default "
        "cpu,heap,goroutine)\n"
        "      --seconds N               CPU profile duration (default 10, at most 300)\n"
        "      --output-dir DIR          where profiles are written (default: .)\n"
        "      --profefe-url URL         push to this profefe instead of writing files\n"
        "      --ignore-annotation       also capture pods without profefe.com/enable=true\n"
        "      --via-apiserver           capture through the API server's pod proxy (needs "
        "pods/proxy get)\n"
        "  -h, --help                    this help\n";

static const char get_profiles_help[] =
        "List the profiles profefe stores for a service.\n"
        "\n"
        "Usage:\n"
        "  kubectl profefe get profiles --service S [flags]\n"
        "\n"
        "Examples:\n"
        "  kubectl profefe get profiles --service web --type cpu --from 2h\n"
        "  kubectl profefe get profiles --service web -l namespace=prod,version=1.4.2 -o "
        "json\n"
        "\n"
        "Flags:\n"
        "      --service S               the profefe service (required)\n"
        "      --type TYPE               cpu, heap, block, mutex, goroutine, threadcreate, "
        "other\n"
        "      --from T                  start: a duration ago (1h, -30m), RFC 3339, or now "
        "(default -1h)\n"
        "      --to T                    end: same forms (default now)\n"
        "  -l, --selector k=v,...        only profiles with these labels\n"
        "      --limit N                 at most N profiles\n"
        "  -o, --output FORMAT           json, yaml or wide\n"
        "  -h, --help                    this help\n";

static const char get_services_help[] = "List the services profefe knows.\n"
                                        "\n"
                                        "Usage:\n"
                                        "  kubectl profefe get services [-o json|yaml]\n"
                                        "\n"
                                        "Flags:\n"
                                        "  -o, --output FORMAT           json or yaml\n"
                                        "  -h, --help                    this help\n";

static const char load_help[] =
        "Upload local pprof files to profefe.\n"
        "\n"
        "The type of each file is detected from its sample types (cpu, heap, goroutine,\n"
        "mutex, block, threadcreate); --type overrides it.\n"
        "\n"
        "Usage:\n"
        "  kubectl profefe load FILE... --service S [flags]\n"
        "\n"
        "Flags:\n"
        "      --service S               the profefe service to store under (required)\n"
        "      --type TYPE               the type of every FILE (default: detected)\n"
        "  -l, --selector k=v,...        labels to store with every profile\n"
        "  -h, --help                    this help\n";

static const char pprof_help[] =
        "Download profiles from profefe; several IDs are merged into one profile.\n"
        "\n"
        "Usage:\n"
        "  kubectl profefe pprof ID... [-o FILE]\n"
        "\n"
        "The profile is written to FILE, or to stdout when stdout is not a terminal.\n"
        "Open it with: go tool pprof FILE\n"
        "\n"
        "Flags:\n"
        "  -o, --output FILE             where to write the profile (- for stdout)\n"
        "  -h, --help                    this help\n";

static const char merge_help[] =
        "Download every profile of a service and type in a time range, merged.\n"
        "\n"
        "Usage:\n"
        "  kubectl profefe merge --service S --type T [--from T] [--to T] [-o FILE]\n"
        "\n"
        "Flags:\n"
        "      --service S               the profefe service (required)\n"
        "      --type TYPE               the profile type (required)\n"
        "      --from T                  start: a duration ago (1h), RFC 3339, or now "
        "(default -1h)\n"
        "      --to T                    end (default now)\n"
        "  -l, --selector k=v,...        only profiles with these labels\n"
        "  -o, --output FILE             where to write the profile (- for stdout)\n"
        "  -h, --help                    this help\n";

void kp_usage(FILE *f, enum kp_cmd cmd)
{
	switch (cmd) {
	case KP_CMD_CAPTURE:
		fputs(capture_help, f);
		break;
	case KP_CMD_GET_PROFILES:
		fputs(get_profiles_help, f);
		break;
	case KP_CMD_GET_SERVICES:
		fputs(get_services_help, f);
		break;
	case KP_CMD_LOAD:
		fputs(load_help, f);
		break;
	case KP_CMD_PPROF:
		fputs(pprof_help, f);
		break;
	case KP_CMD_MERGE:
		fputs(merge_help, f);
		break;
	default:
		fputs(overview, f);
		break;
	}
	if (cmd != KP_CMD_NONE && cmd != KP_CMD_VERSION) {
		if (cmd != KP_CMD_CAPTURE)
			fputs(profefe_flag, f);
		fputs(kube_flags, f);
	}
}
