# NativeVlm build entry point for Windows (PowerShell 7+). Same verbs as build.sh:
#   ./build.ps1 test | demo | native | aot
# aot publishes the console host with NativeAOT for this machine (build/aot/nativevlm.exe, no .NET needed
# to run it), with build/native/nvlm.dll next to it when that is built.
# Needs CMake, a C++17 compiler (MSVC), the .NET 10 SDK; OpenBLAS and the CUDA toolkit are used when
# CMake finds them (the CPU backend falls back to its own GEMM without OpenBLAS).
param([Parameter(Mandatory = $true)][ValidateSet('test', 'demo', 'native', 'aot')][string]$Verb,
      [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = 'Stop'
$Root = $PSScriptRoot
$Configuration = if ($env:CONFIGURATION) { $env:CONFIGURATION } else { 'Release' }

function Invoke-Checked([scriptblock]$Command) {
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "failed ($LASTEXITCODE): $Command" }
}

function Build-Native {
    $cuda = if ($env:NVLM_NO_CUDA -eq '1') { 'OFF' } else { 'ON' }
    Invoke-Checked { cmake -S $Root -B "$Root/build/native" -DNVLM_CUDA=$cuda }
    Invoke-Checked { cmake --build "$Root/build/native" --config $Configuration --parallel }
    # Multi-config generators put the DLL under a configuration folder; the C# side looks in build/native.
    $dll = Get-ChildItem "$Root/build/native" -Recurse -Filter nvlm.dll | Select-Object -First 1
    if ($dll -and $dll.DirectoryName -ne (Resolve-Path "$Root/build/native").Path) {
        Copy-Item $dll.FullName "$Root/build/native/nvlm.dll" -Force
    }
}

function Publish-Aot {
    $rid = [System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier
    Remove-Item "$Root/build/aot" -Recurse -Force -ErrorAction SilentlyContinue
    Invoke-Checked { dotnet publish "$Root/src/NativeVlm.Cli/NativeVlm.Cli.csproj" -c $Configuration -r $rid `
        -p:PublishAot=true -o "$Root/build/aot" -nologo -v quiet }
    # The host looks for the library next to itself first, so the folder can travel as it is.
    if (Test-Path "$Root/build/native/nvlm.dll") {
        Copy-Item "$Root/build/native/nvlm.dll" "$Root/build/aot/" -Force
    } else {
        Write-Warning "build/native/nvlm.dll is not built; build/aot/nativevlm.exe will need NVLM_NATIVE_LIB"
    }
    Get-ChildItem "$Root/build/aot"
}

function Build-Managed { Invoke-Checked { dotnet build "$Root/NativeVlm.sln" -c $Configuration -nologo -v quiet } }

switch ($Verb) {
    'native' { Build-Native }
    'test' {
        Build-Native; Build-Managed
        Invoke-Checked { dotnet test "$Root/NativeVlm.sln" -c $Configuration --no-build -nologo `
            --logger 'trx;LogFileName=results.trx' --results-directory "$Root/build/test-results" }
    }
    'aot' { Publish-Aot }
    'demo' {
        Build-Native; Build-Managed
        Invoke-Checked { dotnet "$Root/src/NativeVlm.Cli/bin/$Configuration/net10.0/nativevlm.dll" demo @Rest }
    }
}
