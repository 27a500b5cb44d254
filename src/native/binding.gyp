# The N-API module of the OTA slot (host flash + simulated bootloader): build/Release/ota_slot.node.
# Built by scripts/build-native.sh (node-gyp bundled with npm, offline, against the machine's Node
# headers). The C core is compiled with -Wall -Wextra -Werror; it links Debian's libmbedcrypto.
{
  "targets": [
    {
      "target_name": "ota_slot",
      "sources": [
        "core/ota_image.c",
        "core/ota_writer.c",
        "core/ota_otadata.c",
        "host/ota_host.c",
        "napi/ota_napi.c"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_c!": ["-std=gnu99"],
      "libraries": ["-lmbedcrypto"]
    }
  ]
}
