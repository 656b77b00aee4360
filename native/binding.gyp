# AddressSanitizer build: GRANTOR_ASAN=1 npm run build:native, then run the TPM tests with
#   LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 npx vitest run test/tpm
{
  "variables": {
    "grantor_asan%": "<!(node -p \"process.env.GRANTOR_ASAN === '1' ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "grantor_tpm",
      "sources": [
        "src/addon.cc",
        "src/common.cc",
        "src/context.cc",
        "src/random_clock.cc",
        "src/pcr.cc",
        "src/keys.cc",
        "src/attest.cc",
        "src/credential.cc",
        "src/nv.cc",
        "src/policy.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_ADDON_API_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fexceptions"],
      "libraries": ["-ltss2-esys", "-ltss2-sys", "-ltss2-tctildr", "-ltss2-mu", "-ltss2-rc"],
      "conditions": [
        [
          "grantor_asan==1",
          {
            "cflags_cc": ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"],
            "ldflags": ["-fsanitize=address"]
          }
        ]
      ]
    }
  ]
}
